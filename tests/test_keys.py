"""API keys: list (secret keys by prefix only), create (secret shown once), revoke (at once, everywhere)."""
import pytest

from amoiq_chat.credentials import hash_api_key

from .factories import bearer, expect, expect_error, fetch, register_admin


async def test_list_shows_publishable_keys_whole_and_secret_keys_by_prefix(client):
    admin = await register_admin(client)
    body = await expect(await client.get("/api/keys", headers=admin.headers), 200)
    keys = {k["kind"]: k for k in body["data"]["keys"]}
    assert set(keys) == {"publishable", "secret"}
    assert keys["publishable"]["key"] == admin.publishable_key
    assert keys["secret"]["key"] is None
    assert admin.secret_key.startswith(keys["secret"]["prefix"]) and len(keys["secret"]["prefix"]) < 16
    assert admin.secret_key not in str(body)


async def test_create_secret_key_shows_it_once_and_stores_its_hash(client, db_conn):
    admin = await register_admin(client)
    body = await expect(await client.post("/api/keys", json={"kind": "secret", "name": "CRM sync"},
                                          headers=admin.headers), 201)
    key = body["data"]["key"]
    assert key["kind"] == "secret" and key["name"] == "CRM sync" and key["key"].startswith("sk_")
    whole = key["key"]
    assert fetch(db_conn, "SELECT tenant_id, key_hash, public_key FROM api_keys WHERE id = %s", key["id"]) == [
        (admin.tenant_id, hash_api_key(whole), None)]
    listed = await expect(await client.get("/api/keys", headers=admin.headers), 200)
    assert whole not in str(listed)
    # It works as a server-to-server credential.
    await expect(await client.get("/api/widgets", headers=bearer(whole)), 200)


async def test_create_publishable_key(client):
    admin = await register_admin(client)
    body = await expect(await client.post("/api/keys", json={"kind": "publishable"}, headers=admin.headers), 201)
    key = body["data"]["key"]
    assert key["key"].startswith("pk_") and key["name"] == ""
    listed = await expect(await client.get("/api/keys", headers=admin.headers), 200)
    assert key["key"] in [k["key"] for k in listed["data"]["keys"]]


@pytest.mark.parametrize("payload, field", [({}, "kind"), ({"kind": "master"}, "kind"), ({"kind": 1}, "kind"),
                                            ({"kind": "secret", "name": "n" * 101}, "name"),
                                            ({"kind": "secret", "key": "sk_mine"}, "key")])
async def test_create_key_validation_writes_nothing(client, db_conn, payload, field):
    admin = await register_admin(client)
    await expect_error(await client.post("/api/keys", json=payload, headers=admin.headers), 400, "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT count(*) FROM api_keys WHERE tenant_id = %s", admin.tenant_id) == [(2,)]


async def test_revoked_key_stops_working_at_once_on_every_process(aiohttp_client, make_app, db_conn):
    first, second = await aiohttp_client(make_app()), await aiohttp_client(make_app())
    admin = await register_admin(first)
    key_id = next(k["id"] for k in (await expect(await first.get("/api/keys", headers=admin.headers), 200))["data"]["keys"]
                  if k["kind"] == "secret")
    await expect(await second.get("/api/widgets", headers=bearer(admin.secret_key)), 200)
    body = await expect(await first.delete(f"/api/keys/{key_id}", headers=admin.headers), 200)
    assert body["data"]["key"]["revoked_at"]
    await expect_error(await second.get("/api/widgets", headers=bearer(admin.secret_key)), 401, "INVALID_API_KEY")
    await expect_error(await first.get("/api/widgets", headers=bearer(admin.secret_key)), 401, "INVALID_API_KEY")
    listed = await expect(await first.get("/api/keys", headers=admin.headers), 200)
    assert key_id not in [k["id"] for k in listed["data"]["keys"]]
    [(revoked_at,)] = fetch(db_conn, "SELECT revoked_at FROM api_keys WHERE id = %s", key_id)
    assert revoked_at is not None
    # Revoking twice: the key is no longer there to revoke.
    await expect_error(await first.delete(f"/api/keys/{key_id}", headers=admin.headers), 404, "NOT_FOUND")


@pytest.mark.parametrize("key_id", ["0", "424242424", "12345678901234567890123"])
async def test_revoke_unknown_key_is_404(client, key_id):
    admin = await register_admin(client)
    await expect_error(await client.delete(f"/api/keys/{key_id}", headers=admin.headers), 404, "NOT_FOUND")


async def test_a_used_key_shows_when_it_was_last_used(client):
    admin = await register_admin(client)
    before = {k["kind"]: k for k in (await expect(await client.get("/api/keys", headers=admin.headers), 200))["data"]["keys"]}
    assert before["secret"]["last_used_at"] is None
    await expect(await client.get("/api/widgets", headers=bearer(admin.secret_key)), 200)
    after = {k["kind"]: k for k in (await expect(await client.get("/api/keys", headers=admin.headers), 200))["data"]["keys"]}
    assert after["secret"]["last_used_at"] is not None
    assert after["publishable"]["last_used_at"] is None
