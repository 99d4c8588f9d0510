"""Credentials on every route of accounts, keys, tenant and widgets: JWT checks and role checks."""
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from amoiq_chat.credentials import issue_token

from .factories import bearer, create_agent, expect, expect_error, register_admin

ADMIN_ONLY = [("GET", "/api/agents"), ("POST", "/api/agents"), ("PUT", "/api/agents/1"), ("DELETE", "/api/agents/1"),
              ("GET", "/api/keys"), ("POST", "/api/keys"), ("DELETE", "/api/keys/1"), ("GET", "/api/tenant"),
              ("PUT", "/api/tenant"), ("POST", "/api/tenant/identity-secret")]
# Tenant data: admins and secret keys.
MANAGERS = [("GET", "/api/widgets"), ("POST", "/api/widgets"), ("GET", "/api/widgets/stats/overview"),
            ("GET", "/api/widgets/widget-x"), ("PUT", "/api/widgets/widget-x"), ("DELETE", "/api/widgets/widget-x")]
STAFF = [("GET", "/api/auth/me"), ("GET", "/api/agents/stats")]
EVERY = ADMIN_ONLY + MANAGERS + STAFF


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs512(secret: str, payload: dict) -> str:
    """Sign by hand (pyjwt warns about the key length for HS512, and warnings are errors here)."""
    signing_input = f"{b64({'alg': 'HS512', 'typ': 'JWT'})}.{b64(payload)}"
    return f"{signing_input}.{b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha512).digest())}"


def claims(settings, admin, **changes):
    now = int(time.time())
    base = {"sub": str(admin.id), "role": "admin", "tenant": admin.tenant_id, "iat": now, "exp": now + 600,
            "iss": settings.jwt_issuer, "aud": settings.jwt_audience}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def forged(settings, admin, case):
    """A token that must be refused, made with pyjwt (or by hand)."""
    now = int(time.time())
    secret = settings.jwt_secret
    if case == "expired":
        return jwt.encode(claims(settings, admin, iat=now - 700, exp=now - 100), secret, algorithm="HS256")
    if case == "not yet valid":
        return jwt.encode(claims(settings, admin, nbf=now + 3600), secret, algorithm="HS256")
    if case == "wrong issuer":
        return jwt.encode(claims(settings, admin, iss="someone-else"), secret, algorithm="HS256")
    if case == "wrong audience":
        return jwt.encode(claims(settings, admin, aud="another-app"), secret, algorithm="HS256")
    if case == "alg none":
        return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(settings, admin))}."
    if case == "HS512 with the right secret":
        return hs512(secret, claims(settings, admin))
    if case == "other secret":
        return jwt.encode(claims(settings, admin), "another-secret-" + "y" * 32, algorithm="HS256")
    if case == "tampered payload":
        header, _, signature = jwt.encode(claims(settings, admin), secret, algorithm="HS256").split(".")
        return f"{header}.{b64(claims(settings, admin, sub='999999'))}.{signature}"
    if case == "tampered signature":
        token = jwt.encode(claims(settings, admin), secret, algorithm="HS256")
        return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    if case == "no exp":
        return jwt.encode(claims(settings, admin, exp=None), secret, algorithm="HS256")
    if case == "unknown role":
        return jwt.encode(claims(settings, admin, role="root"), secret, algorithm="HS256")
    if case == "garbage":
        return "not.a.jwt"
    raise AssertionError(case)


CASES = ["expired", "not yet valid", "wrong issuer", "wrong audience", "alg none", "HS512 with the right secret",
         "other secret", "tampered payload", "tampered signature", "no exp", "unknown role", "garbage"]


@pytest.mark.parametrize("case", CASES)
async def test_bad_tokens_are_401_invalid_jwt_token(client, settings, case):
    admin = await register_admin(client)
    # The genuine token works, so the refusals below are about the token alone.
    await expect(await client.get("/api/widgets", headers=admin.headers), 200)
    token = forged(settings, admin, case)
    for path in ("/api/auth/me", "/api/widgets", "/api/tenant"):
        await expect_error(await client.get(path, headers=bearer(token)), 401, "INVALID_JWT_TOKEN")


async def test_rest_routes_take_no_token_from_the_query_string(client, settings):
    admin = await register_admin(client)
    await expect(await client.get("/api/auth/me", headers=admin.headers), 200)
    for path in ("/api/auth/me", "/api/widgets", "/api/tenant", "/api/keys"):
        await expect_error(await client.get(f"{path}?token={admin.token}"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("method, path", EVERY)
async def test_no_credential_is_401(client, method, path):
    await expect_error(await client.request(method, path), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("method, path", ADMIN_ONLY + MANAGERS)
async def test_agent_token_cannot_call_admin_routes(client, db_conn, method, path):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    await expect_error(await client.request(method, path, headers=agent.headers, json={}), 403, "FORBIDDEN")


@pytest.mark.parametrize("method, path", EVERY)
async def test_visitor_token_and_publishable_key_are_refused(client, settings, method, path):
    admin = await register_admin(client)
    visitor = issue_token(settings, subject="session-1", role="visitor", tenant_id=admin.tenant_id, sid="session-1")
    await expect_error(await client.request(method, path, headers=bearer(visitor), json={}), 403, "FORBIDDEN")
    await expect_error(await client.request(method, path, headers=bearer(admin.publishable_key), json={}), 403,
                       "FORBIDDEN")


@pytest.mark.parametrize("method, path", ADMIN_ONLY + [("GET", "/api/auth/me")])
async def test_secret_key_cannot_manage_accounts(client, method, path):
    admin = await register_admin(client)
    await expect_error(await client.request(method, path, headers=bearer(admin.secret_key), json={}), 403, "FORBIDDEN")


async def test_secret_key_manages_widgets(client):
    admin = await register_admin(client)
    key = bearer(admin.secret_key)
    created = await expect(await client.post("/api/widgets", json={"business_name": "By key"}, headers=key), 201)
    site_key = created["data"]["widget"]["site_key"]
    listed = await expect(await client.get("/api/widgets", headers=key), 200)
    assert [w["site_key"] for w in listed["data"]["widgets"]] == [site_key]


async def test_unknown_api_key_is_401_invalid_api_key(client):
    await expect_error(await client.get("/api/widgets", headers=bearer("sk_" + "x" * 32)), 401, "INVALID_API_KEY")


async def test_token_of_a_deleted_admin_account_is_refused(client, db_conn):
    admin = await register_admin(client)
    with db_conn.cursor() as cur:
        cur.execute("DELETE FROM users WHERE id = %s", (admin.id,))
    await expect_error(await client.get("/api/widgets", headers=admin.headers), 401, "INVALID_JWT_TOKEN")
