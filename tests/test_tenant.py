"""Tenant settings: GET/PUT /api/tenant, POST /api/tenant/identity-secret."""
import pytest

from .factories import create_agent, expect, expect_error, fetch, register_admin

TENANT_FIELDS = {"id", "name", "identityVerification", "identitySecret", "sessionResume", "assignment", "createdAt",
                 "updatedAt"}


async def test_get_tenant_shows_settings_and_identity_secret(client, db_conn):
    admin = await register_admin(client)
    body = await expect(await client.get("/api/tenant", headers=admin.headers), 200)
    tenant = body["data"]["tenant"]
    assert set(tenant) == TENANT_FIELDS
    assert tenant["id"] == admin.tenant_id and tenant["identityVerification"] is False
    assert fetch(db_conn, "SELECT identity_secret FROM tenants WHERE id = %s", admin.tenant_id) == [
        (tenant["identitySecret"],)]


async def test_update_name_and_identity_verification(client, db_conn):
    admin = await register_admin(client)
    body = await expect(await client.put("/api/tenant", json={"name": "Acme Corp", "identityVerification": True},
                                         headers=admin.headers), 200)
    assert body["data"]["tenant"]["name"] == "Acme Corp" and body["data"]["tenant"]["identityVerification"] is True
    assert fetch(db_conn, "SELECT name, identity_verification FROM tenants WHERE id = %s", admin.tenant_id) == [
        ("Acme Corp", True)]
    body = await expect(await client.put("/api/tenant", json={"identityVerification": False}, headers=admin.headers), 200)
    assert body["data"]["tenant"]["name"] == "Acme Corp" and body["data"]["tenant"]["identityVerification"] is False


async def test_assignment_is_manual_until_set_to_auto(client, db_conn):
    admin = await register_admin(client)
    assert (await expect(await client.get("/api/tenant", headers=admin.headers), 200))["data"]["tenant"]["assignment"] == "manual"
    body = await expect(await client.put("/api/tenant", json={"assignment": "auto"}, headers=admin.headers), 200)
    assert body["data"]["tenant"]["assignment"] == "auto"
    assert fetch(db_conn, "SELECT assignment FROM tenants WHERE id = %s", admin.tenant_id) == [("auto",)]


@pytest.mark.parametrize("payload, field", [({}, "body"), ({"identitySecret": "mine"}, "identitySecret"),
                                            ({"identityVerification": "true"}, "identityVerification"),
                                            ({"name": ""}, "name"), ({"name": "n" * 256}, "name"),
                                            ({"id": "tenant-x"}, "id"), ({"assignment": "round-robin"}, "assignment")])
async def test_update_tenant_validation_changes_nothing(client, db_conn, payload, field):
    admin = await register_admin(client)
    before = fetch(db_conn, "SELECT * FROM tenants WHERE id = %s", admin.tenant_id)
    await expect_error(await client.put("/api/tenant", json=payload, headers=admin.headers), 400, "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT * FROM tenants WHERE id = %s", admin.tenant_id) == before


async def test_rotate_identity_secret(client, db_conn):
    admin = await register_admin(client)
    old = (await expect(await client.get("/api/tenant", headers=admin.headers), 200))["data"]["tenant"]["identitySecret"]
    body = await expect(await client.post("/api/tenant/identity-secret", headers=admin.headers), 200)
    new = body["data"]["tenant"]["identitySecret"]
    assert new != old and len(new) == 64
    assert fetch(db_conn, "SELECT identity_secret FROM tenants WHERE id = %s", admin.tenant_id) == [(new,)]


async def test_agent_cannot_read_the_identity_secret(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    body = await expect_error(await client.get("/api/tenant", headers=agent.headers), 403, "FORBIDDEN")
    assert "identitySecret" not in str(body)
