"""The admin's agents: list, create, change, delete; agents/stats from stored rows."""
import datetime as dt
import time

import jwt
import pytest

from .factories import (PASSWORD, bearer, create_agent, create_widget, expect, expect_error, fetch, insert_messages,
                        insert_rating, insert_session, register_admin, unique)

AGENT_FIELDS = {"id", "username", "email", "full_name", "is_active", "is_online", "last_active", "created_at",
                "updated_at", "max_concurrent_chats"}


def new_agent_payload(**changes):
    name = unique("agent")
    return {"username": name, "email": f"{name}@example.com", "password": PASSWORD, "full_name": "Jane Agent",
            **changes}


async def test_create_and_list_agents(client, db_conn):
    admin = await register_admin(client)
    payload = new_agent_payload()
    body = await expect(await client.post("/api/agents", json=payload, headers=admin.headers), 201)
    agent = body["data"]["agent"]
    assert body["message"] == "Agent created successfully"
    assert set(agent) == AGENT_FIELDS
    assert (agent["username"], agent["email"], agent["full_name"], agent["is_active"]) == (
        payload["username"], payload["email"], "Jane Agent", True)
    assert "password" not in str(body) and PASSWORD not in str(body)
    [(tenant_id, password_hash)] = fetch(db_conn, "SELECT tenant_id, password_hash FROM agents WHERE id = %s",
                                         agent["id"])
    assert tenant_id == admin.tenant_id and password_hash.startswith("$argon2id$")
    listed = await expect(await client.get("/api/agents", headers=admin.headers), 200)
    assert listed["data"]["agents"] == [agent]


async def test_created_agent_can_log_in(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    me = await expect(await client.get("/api/auth/me", headers=agent.headers), 200)
    assert me["data"]["user"]["tenantId"] == admin.tenant_id


@pytest.mark.parametrize("change, field", [
    ({"username": None}, "username"), ({"full_name": None}, "full_name"), ({"password": "1234567"}, "password"),
    ({"email": "nope"}, "email"), ({"full_name": "   "}, "full_name"), ({"full_name": "x" * 256}, "full_name"),
    ({"is_active": "yes"}, "is_active"), ({"tenant_id": "tenant-other"}, "tenant_id"), ({"is_online": True}, "is_online"),
    ({"max_concurrent_chats": 0}, "max_concurrent_chats"), ({"max_concurrent_chats": "2"}, "max_concurrent_chats"),
])
async def test_create_agent_validation_writes_nothing(client, db_conn, change, field):
    admin = await register_admin(client)
    payload = {k: v for k, v in new_agent_payload(**change).items() if v is not None}
    await expect_error(await client.post("/api/agents", json=payload, headers=admin.headers), 400, "VALIDATION_ERROR",
                       field)
    assert fetch(db_conn, "SELECT count(*) FROM agents WHERE tenant_id = %s", admin.tenant_id) == [(0,)]


@pytest.mark.parametrize("field", ["username", "email"])
async def test_duplicate_agent_username_or_email_is_409(client, field):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    taken = agent.row[field].upper()
    await expect_error(await client.post("/api/agents", json=new_agent_payload(**{field: taken}), headers=admin.headers),
                       409, "CONFLICT", field)
    other = await create_agent(client, admin)
    await expect_error(await client.put(f"/api/agents/{other.id}", json={field: taken}, headers=admin.headers),
                       409, "CONFLICT", field)


async def test_update_agent_partially(client, db_conn):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    body = await expect(await client.put(f"/api/agents/{agent.id}", json={"full_name": "Renamed"},
                                         headers=admin.headers), 200)
    assert body["message"] == "Agent updated successfully"
    assert body["data"]["agent"] == {**agent.row, "full_name": "Renamed", "updated_at": body["data"]["agent"]["updated_at"]}
    assert fetch(db_conn, "SELECT full_name, email FROM agents WHERE id = %s", agent.id) == [("Renamed", agent.email)]


async def test_new_password_replaces_the_old_one(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    await expect(await client.put(f"/api/agents/{agent.id}", json={"password": "a-brand-new-one"},
                                  headers=admin.headers), 200)
    await expect_error(await client.post("/api/auth/agent-login", json={"email": agent.email, "password": agent.password}),
                       401, "UNAUTHORIZED")
    await expect(await client.post("/api/auth/agent-login", json={"email": agent.email, "password": "a-brand-new-one"}),
                 200)


async def test_reactivated_agent_works_again(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    await expect(await client.put(f"/api/agents/{agent.id}", json={"is_active": False}, headers=admin.headers), 200)
    await expect_error(await client.get("/api/agents/stats", headers=agent.headers), 401, "INVALID_JWT_TOKEN")
    await expect(await client.put(f"/api/agents/{agent.id}", json={"is_active": True}, headers=admin.headers), 200)
    await expect(await client.get("/api/agents/stats", headers=agent.headers), 200)


@pytest.mark.parametrize("raw, field", [(b"{}", "body"), (b'{"email": 5}', "email"), (b'{"id": 9}', "id"),
                                        (b"[]", "body"), (b'{"password": "short"}', "password")])
async def test_update_agent_validation_changes_nothing(client, db_conn, raw, field):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    before = fetch(db_conn, "SELECT * FROM agents WHERE id = %s", agent.id)
    resp = await client.put(f"/api/agents/{agent.id}", data=raw,
                            headers={**admin.headers, "Content-Type": "application/json"})
    await expect_error(resp, 400, "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT * FROM agents WHERE id = %s", agent.id) == before


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("agent_id", ["999999999", "99999999999999999999999"])
async def test_unknown_agent_is_404(client, method, agent_id):
    admin = await register_admin(client)
    await expect_error(await client.request(method, f"/api/agents/{agent_id}", json={"full_name": "X"},
                                            headers=admin.headers), 404, "USER_NOT_FOUND")


async def test_delete_agent_removes_it_and_its_token(client, db_conn):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    body = await expect(await client.delete(f"/api/agents/{agent.id}", headers=admin.headers), 200)
    assert body == {"success": True, "message": "Agent deleted successfully"}
    assert fetch(db_conn, "SELECT count(*) FROM agents WHERE id = %s", agent.id) == [(0,)]
    await expect_error(await client.get("/api/auth/me", headers=agent.headers), 401, "INVALID_JWT_TOKEN")
    await expect_error(await client.delete(f"/api/agents/{agent.id}", headers=admin.headers), 404, "USER_NOT_FOUND")


async def test_agent_stats_are_null_without_data(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    for who in (admin, agent):
        body = await expect(await client.get("/api/agents/stats", headers=who.headers), 200)
        assert body == {"success": True, "data": {"chatsHandled": 0, "activeChats": 0, "avgResponseTime": None,
                                                  "customerSatisfaction": None}}


async def test_agent_stats_come_from_stored_rows(client, db_conn):
    admin = await register_admin(client)
    anna, bob = await create_agent(client, admin), await create_agent(client, admin)
    widget = await create_widget(client, admin)
    tenant, site = admin.tenant_id, widget["site_key"]
    start = dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.timezone.utc)  # insert_messages' time 0
    at = lambda seconds: start + dt.timedelta(seconds=seconds)  # noqa: E731
    # Anna: an escalated chat she holds, first answered 60 s after the escalation; a chat she took
    # from the assistant at 10 s, answered at 130 s (120 s after taking it), closed and rated 5.
    s1 = insert_session(db_conn, tenant, site, status="active", ai_mode=False, assigned_agent_id=anna.id,
                        escalated_at=at(0), accepted_at=at(30))
    insert_messages(db_conn, tenant, s1, ("visitor", 0, None), ("ai", 1, None), ("agent", 60, f"agent:{anna.id}"),
                    ("visitor", 100, None), ("agent", 280, f"agent:{anna.id}"))
    s2 = insert_session(db_conn, tenant, site, status="closed", ai_mode=False, assigned_agent_id=anna.id,
                        accepted_at=at(10))
    insert_messages(db_conn, tenant, s2, ("visitor", 0, None), ("agent", 130, f"agent:{anna.id}"))
    insert_rating(db_conn, tenant, s2, 5, anna.id)
    # Bob: a chat escalated at 5 s and first answered at 605 s, closed and rated 2; and one he
    # handed back to the assistant without answering (handled, not active, no response time).
    s3 = insert_session(db_conn, tenant, site, status="closed", ai_mode=False, assigned_agent_id=bob.id,
                        escalated_at=at(5), accepted_at=at(300))
    insert_messages(db_conn, tenant, s3, ("visitor", 0, None), ("ai", 2, None), ("visitor", 10, None),
                    ("agent", 605, f"agent:{bob.id}"))
    insert_rating(db_conn, tenant, s3, 2, bob.id)
    insert_session(db_conn, tenant, site, status="active", ai_mode=True, assigned_agent_id=bob.id, accepted_at=at(0))
    # A chat the assistant alone answered counts for nobody.
    s5 = insert_session(db_conn, tenant, site, status="active")
    insert_messages(db_conn, tenant, s5, ("visitor", 0, None), ("ai", 1, None))

    anna_stats = (await expect(await client.get("/api/agents/stats", headers=anna.headers), 200))["data"]
    assert anna_stats == {"chatsHandled": 2, "activeChats": 1, "avgResponseTime": "1.5 min",
                          "customerSatisfaction": 5.0}
    bob_stats = (await expect(await client.get("/api/agents/stats", headers=bob.headers), 200))["data"]
    assert bob_stats == {"chatsHandled": 2, "activeChats": 0, "avgResponseTime": "10.0 min",
                         "customerSatisfaction": 2.0}
    # The admin sees all agents together: (60 + 120 + 600) / 3 s = 4.3 min, ratings (5 + 2) / 2.
    team = (await expect(await client.get("/api/agents/stats", headers=admin.headers), 200))["data"]
    assert team == {"chatsHandled": 4, "activeChats": 1, "avgResponseTime": "4.3 min", "customerSatisfaction": 3.5}


async def test_password_change_ends_tokens_issued_before_it(client, settings):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    claims = jwt.decode(agent.token, options={"verify_signature": False})
    earlier = jwt.encode({**claims, "iat": int(time.time()) - 10}, settings.jwt_secret, algorithm="HS256")
    await expect(await client.get("/api/agents/stats", headers=bearer(earlier)), 200)
    await expect(await client.put(f"/api/agents/{agent.id}", json={"password": "a-brand-new-one"},
                                  headers=admin.headers), 200)
    await expect_error(await client.get("/api/agents/stats", headers=bearer(earlier)), 401, "INVALID_JWT_TOKEN")
    login = await expect(await client.post("/api/auth/agent-login",
                                           json={"email": agent.email, "password": "a-brand-new-one"}), 200)
    await expect(await client.get("/api/agents/stats", headers=bearer(login["data"]["token"])), 200)
    # Changing other fields leaves tokens alone.
    await expect(await client.put(f"/api/agents/{agent.id}", json={"full_name": "Renamed"}, headers=admin.headers), 200)
    await expect(await client.get("/api/agents/stats", headers=bearer(login["data"]["token"])), 200)
