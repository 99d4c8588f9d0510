"""Tenant isolation: tenant B's token and keys on every route with tenant A's ids get 403/404, change nothing."""
import pytest

from amoiq_chat.credentials import issue_token

from .factories import (bearer, create_agent, create_widget, expect, expect_error, fetch, insert_messages,
                        insert_session, register_admin)

SNAPSHOT = {
    "tenants": "SELECT * FROM tenants WHERE id = %s",
    "users": "SELECT * FROM users WHERE tenant_id = %s ORDER BY id",
    "agents": "SELECT * FROM agents WHERE tenant_id = %s ORDER BY id",
    "api_keys": "SELECT * FROM api_keys WHERE tenant_id = %s ORDER BY id",
    "widget_configs": "SELECT * FROM widget_configs WHERE tenant_id = %s ORDER BY id",
}


def snapshot(db_conn, tenant_id):
    return {table: fetch(db_conn, sql, tenant_id) for table, sql in SNAPSHOT.items()}


@pytest.fixture
async def tenants(client, db_conn):
    """Tenant A with an agent and a widget; tenant B with its own admin, agent and widget."""
    a, b = await register_admin(client), await register_admin(client)
    a_agent, b_agent = await create_agent(client, a), await create_agent(client, b)
    a_widget, b_widget = await create_widget(client, a, business_name="A Corp"), await create_widget(client, b)
    [(a_key_id,)] = fetch(db_conn, "SELECT id FROM api_keys WHERE tenant_id = %s AND kind = 'secret'", a.tenant_id)
    return {"a": a, "b": b, "a_agent": a_agent, "b_agent": b_agent, "a_widget": a_widget, "b_widget": b_widget,
            "a_key_id": a_key_id}


def credentials(t):
    b = t["b"]
    return {"admin token": b.headers, "secret key": bearer(b.secret_key)}


@pytest.mark.parametrize("who", ["admin token", "secret key"])
async def test_other_tenants_widget_is_forbidden(client, db_conn, tenants, who):
    headers = credentials(tenants)[who]
    site_key = tenants["a_widget"]["site_key"]
    before = snapshot(db_conn, tenants["a"].tenant_id)
    await expect_error(await client.get(f"/api/widgets/{site_key}", headers=headers), 403, "FORBIDDEN")
    await expect_error(await client.put(f"/api/widgets/{site_key}", json={"widget_title": "Hijacked", "is_active": False},
                                        headers=headers), 403, "FORBIDDEN")
    await expect_error(await client.delete(f"/api/widgets/{site_key}", headers=headers), 403, "FORBIDDEN")
    assert snapshot(db_conn, tenants["a"].tenant_id) == before
    await expect(await client.get(f"/api/widgets/{site_key}", headers=tenants["a"].headers), 200)


async def test_other_tenants_agents_and_keys_are_not_found(client, db_conn, tenants):
    headers = tenants["b"].headers
    a_agent = tenants["a_agent"]
    before = snapshot(db_conn, tenants["a"].tenant_id)
    await expect_error(await client.put(f"/api/agents/{a_agent.id}", json={"password": "taken-over!", "is_active": True},
                                        headers=headers), 404, "USER_NOT_FOUND")
    await expect_error(await client.delete(f"/api/agents/{a_agent.id}", headers=headers), 404, "USER_NOT_FOUND")
    await expect_error(await client.delete(f"/api/keys/{tenants['a_key_id']}", headers=headers), 404, "NOT_FOUND")
    assert snapshot(db_conn, tenants["a"].tenant_id) == before
    await expect(await client.get("/api/widgets", headers=bearer(tenants["a"].secret_key)), 200)
    await expect(await client.post("/api/auth/agent-login", json={"email": a_agent.email, "password": a_agent.password}),
                 200)


async def test_lists_and_stats_show_only_the_callers_tenant(client, db_conn, tenants):
    a, b = tenants["a"], tenants["b"]
    session = insert_session(db_conn, a.tenant_id, tenants["a_widget"]["site_key"], status="active", ai_mode=False,
                             assigned_agent_id=tenants["a_agent"].id)
    insert_messages(db_conn, a.tenant_id, session, ("visitor", 0, None))
    for headers in credentials(tenants).values():
        widgets = (await expect(await client.get("/api/widgets", headers=headers), 200))["data"]
        assert [w["site_key"] for w in widgets["widgets"]] == [tenants["b_widget"]["site_key"]]
        assert widgets["stats"]["total_chats"] == 0 and widgets["stats"]["total_messages"] == 0
    agents = (await expect(await client.get("/api/agents", headers=b.headers), 200))["data"]["agents"]
    assert [x["id"] for x in agents] == [tenants["b_agent"].id]
    keys = (await expect(await client.get("/api/keys", headers=b.headers), 200))["data"]["keys"]
    assert tenants["a_key_id"] not in [k["id"] for k in keys]
    tenant = (await expect(await client.get("/api/tenant", headers=b.headers), 200))["data"]["tenant"]
    assert tenant["id"] == b.tenant_id
    for who in (b, tenants["b_agent"]):
        stats = (await expect(await client.get("/api/agents/stats", headers=who.headers), 200))["data"]
        assert stats["chatsHandled"] == 0 and stats["activeChats"] == 0
    a_stats = (await expect(await client.get("/api/agents/stats", headers=a.headers), 200))["data"]
    assert a_stats["activeChats"] == 1


async def test_tenant_settings_change_only_the_callers_tenant(client, db_conn, tenants):
    a, b = tenants["a"], tenants["b"]
    before = snapshot(db_conn, a.tenant_id)
    await expect(await client.put("/api/tenant", json={"name": "B renamed", "identityVerification": True},
                                  headers=b.headers), 200)
    await expect(await client.post("/api/tenant/identity-secret", headers=b.headers), 200)
    assert snapshot(db_conn, a.tenant_id) == before


async def test_a_token_binds_account_and_tenant(client, settings, tenants):
    # Even a correctly signed token naming B's admin in A's tenant is refused.
    token = issue_token(settings, subject=str(tenants["b"].id), role="admin", tenant_id=tenants["a"].tenant_id)
    await expect_error(await client.get("/api/widgets", headers=bearer(token)), 401, "INVALID_JWT_TOKEN")
    agent_token = issue_token(settings, subject=str(tenants["b_agent"].id), role="agent", tenant_id=tenants["a"].tenant_id)
    await expect_error(await client.get("/api/agents/stats", headers=bearer(agent_token)), 401, "INVALID_JWT_TOKEN")
