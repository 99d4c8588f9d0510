"""auth/register, auth/login, auth/agent-login, auth/me: shapes, stored rows, validation, 409."""
import pytest

from amoiq_chat.credentials import hash_api_key

from .factories import (PASSWORD, bearer, create_agent, expect, expect_error, fetch, register_admin,
                        unique)


async def test_register_answers_the_seed_shape_and_creates_tenant_admin_and_keys(client, db_conn):
    name = unique("owner")
    resp = await client.post("/api/auth/register",
                             json={"username": name, "email": f"{name}@example.com", "password": "correct-horse-9"})
    body = await expect(resp, 201)
    assert body["success"] is True and body["message"] == "User registered successfully"
    data = body["data"]
    tenant = data["tenant"]
    assert set(data) == {"user", "token", "tenant"}
    assert data["user"] == {"id": data["user"]["id"], "username": name, "email": f"{name}@example.com",
                            "tenantId": tenant["id"]}
    assert tenant["id"].startswith("tenant-")
    assert tenant["publishableKey"].startswith("pk_") and tenant["secretKey"].startswith("sk_")
    [(stored_password,)] = fetch(db_conn, "SELECT password FROM users WHERE id = %s AND tenant_id = %s",
                                 data["user"]["id"], tenant["id"])
    assert stored_password.startswith("$argon2id$") and "correct-horse-9" not in stored_password
    keys = dict(fetch(db_conn, "SELECT kind, key_hash FROM api_keys WHERE tenant_id = %s", tenant["id"]))
    assert keys == {"publishable": hash_api_key(tenant["publishableKey"]), "secret": hash_api_key(tenant["secretKey"])}
    # The secret key is stored only as its hash.
    assert fetch(db_conn, "SELECT count(*) FROM api_keys WHERE public_key = %s OR prefix = %s",
                 tenant["secretKey"], tenant["secretKey"]) == [(0,)]
    me = await expect(await client.get("/api/auth/me", headers=bearer(data["token"])), 200)
    assert me == {"success": True, "data": {"user": {**data["user"], "role": "admin"}}}


@pytest.mark.parametrize("field", ["username", "email"])
async def test_register_duplicate_username_or_email_is_409_in_any_case(client, db_conn, field):
    admin = await register_admin(client)
    [(username,)] = fetch(db_conn, "SELECT username FROM users WHERE id = %s", admin.id)
    other = unique("other")
    payload = {"username": other, "email": f"{other}@example.com", "password": PASSWORD,
               field: (username if field == "username" else admin.email).upper()}
    before = fetch(db_conn, "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM api_keys)")
    await expect_error(await client.post("/api/auth/register", json=payload), 409, "CONFLICT", field)
    assert fetch(db_conn, "SELECT count(*) FROM users WHERE username = %s", payload["username"]) == [(0,)]
    # No tenant or key is left behind by the refused registration.
    assert fetch(db_conn, "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM api_keys)") == before


@pytest.mark.parametrize("change, field", [
    ({"username": None}, "username"),
    ({"username": "ab"}, "username"),
    ({"username": "has space"}, "username"),
    ({"username": "x" * 101}, "username"),
    ({"email": "not-an-email"}, "email"),
    ({"email": 42}, "email"),
    ({"password": "short"}, "password"),
    ({"password": "p" * 1025}, "password"),
    ({"password": ["password123"]}, "password"),
    ({"role": "admin"}, "role"),
])
async def test_register_validation_names_the_field_and_writes_nothing(client, db_conn, change, field):
    name = unique("bad")
    payload = {"username": name, "email": f"{name}@example.com", "password": PASSWORD, **change}
    payload = {k: v for k, v in payload.items() if v is not None}
    before = fetch(db_conn, "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM users)")
    await expect_error(await client.post("/api/auth/register", json=payload), 400, "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM users)") == before


async def test_register_oversized_body_is_413_and_writes_nothing(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app(max_body_bytes=1024))
    name = unique("big")
    payload = {"username": name, "email": f"{name}@example.com", "password": "p" * 1000}
    await expect_error(await client.post("/api/auth/register", json=payload), 413, "PAYLOAD_TOO_LARGE")
    assert fetch(db_conn, "SELECT count(*) FROM users WHERE username = %s", name) == [(0,)]


async def test_login_answers_user_with_tenant_and_a_working_token(client):
    admin = await register_admin(client)
    body = await expect(await client.post("/api/auth/login", json={"email": admin.email.upper(),
                                                                   "password": admin.password}), 200)
    assert body["message"] == "Login successful"
    assert body["data"]["user"] == admin.body["data"]["user"]
    me = await expect(await client.get("/api/auth/me", headers=bearer(body["data"]["token"])), 200)
    assert me["data"]["user"]["tenantId"] == admin.tenant_id


async def test_unknown_email_and_wrong_password_get_the_same_answer(client):
    admin = await register_admin(client)
    wrong = await client.post("/api/auth/login", json={"email": admin.email, "password": "not-the-password"})
    unknown = await client.post("/api/auth/login", json={"email": unique("nobody") + "@example.com",
                                                         "password": "not-the-password"})
    wrong_body, unknown_body = await expect(wrong, 401), await expect(unknown, 401)
    assert wrong_body == unknown_body
    assert wrong_body["code"] == "UNAUTHORIZED" and wrong_body["message"] == "Invalid email or password"


async def test_login_validation_is_400(client):
    await expect_error(await client.post("/api/auth/login", json={"email": "a@example.com"}), 400,
                       "VALIDATION_ERROR", "password")
    await expect_error(await client.post("/api/auth/login", data=b"{", headers={"Content-Type": "application/json"}),
                       400, "VALIDATION_ERROR", "body")


async def test_agent_login_answers_the_seed_shape(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin, full_name="Support Agent")
    body = await expect(await client.post("/api/auth/agent-login",
                                          json={"email": agent.email, "password": agent.password}), 200)
    assert body["message"] == "Agent login successful"
    assert body["data"]["agent"] == {"id": agent.id, "username": agent.row["username"], "email": agent.email,
                                     "full_name": "Support Agent", "tenantId": admin.tenant_id}
    me = await expect(await client.get("/api/auth/me", headers=bearer(body["data"]["token"])), 200)
    assert me["data"]["user"]["role"] == "agent" and me["data"]["user"]["id"] == agent.id


async def test_admin_cannot_use_agent_login_nor_agent_admin_login(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    await expect_error(await client.post("/api/auth/agent-login", json={"email": admin.email, "password": admin.password}),
                       401, "UNAUTHORIZED")
    await expect_error(await client.post("/api/auth/login", json={"email": agent.email, "password": agent.password}),
                       401, "UNAUTHORIZED")


async def test_deactivated_agent_cannot_log_in_and_its_token_stops_working(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    await expect(await client.put(f"/api/agents/{agent.id}", json={"is_active": False}, headers=admin.headers), 200)
    await expect_error(await client.get("/api/auth/me", headers=agent.headers), 401, "INVALID_JWT_TOKEN")
    await expect_error(await client.post("/api/auth/agent-login", json={"email": agent.email, "password": agent.password}),
                       403, "FORBIDDEN")
    # A wrong password still gets the ordinary answer: deactivation is told only to who knows the password.
    await expect_error(await client.post("/api/auth/agent-login", json={"email": agent.email, "password": "wrong-one!"}),
                       401, "UNAUTHORIZED")


async def test_me_needs_a_credential(client):
    await expect_error(await client.get("/api/auth/me"), 401, "UNAUTHORIZED")
    await expect_error(await client.get("/api/auth/me", headers={"Authorization": "Basic abc"}), 401, "UNAUTHORIZED")


async def test_me_refuses_api_keys(client):
    admin = await register_admin(client)
    await expect_error(await client.get("/api/auth/me", headers=bearer(admin.secret_key)), 403, "FORBIDDEN")
    await expect_error(await client.get("/api/auth/me", headers=bearer(admin.publishable_key)), 403, "FORBIDDEN")


async def test_unknown_email_costs_one_password_verification_like_a_wrong_password(client, monkeypatch):
    from amoiq_chat.services import accounts

    calls = []
    real = accounts.verify_password

    async def spy(password_hash, password):
        calls.append(password_hash)
        return await real(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", spy)
    admin = await register_admin(client)
    await expect(await client.post("/api/auth/login", json={"email": admin.email, "password": "wrong-password"}), 401)
    await expect(await client.post("/api/auth/login", json={"email": unique("nobody") + "@example.com",
                                                            "password": "wrong-password"}), 401)
    assert len(calls) == 2 and calls[0].startswith("$argon2id$") and calls[1] is None
