"""Webhook endpoints over HTTP: CRUD, secrets and their rotation, the SSRF guard, 410, pings, manual retries,
workflow events; and our signature against the Standard Webhooks known-answer vector."""
from __future__ import annotations

import base64
import datetime as dt

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from amoiq_chat import db
from amoiq_chat.appkeys import DB, REDIS, WEBHOOK_WORKER
from amoiq_chat.services import webhooks
from amoiq_chat.services.webhook_http import sign

from .factories import bearer, expect, expect_error, fetch
from .webhook_fixtures import (add_endpoint, chat_app, deliveries, receiver, say,  # noqa: F401 - fixtures
                               settled_before)

# The vector published with the reference implementation (standard-webhooks, libraries/python/tests).
VECTOR = {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
          "timestamp": 1614265330, "body": b'{"test": 2432232314}',
          "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


def test_our_signature_is_the_known_answer():
    assert sign(VECTOR["secret"], VECTOR["id"], VECTOR["timestamp"], VECTOR["body"]) == VECTOR["signature"]
    reference = Webhook(VECTOR["secret"]).sign(VECTOR["id"], dt.datetime.fromtimestamp(VECTOR["timestamp"],
                                                                                       dt.timezone.utc),
                                               VECTOR["body"].decode())
    assert reference == VECTOR["signature"]


async def test_endpoints_are_made_listed_changed_and_deleted(aiohttp_client, make_app, redis_server):
    client, tenant, _ = await chat_app(aiohttp_client, make_app, redis_server[0])
    admin = bearer(tenant.admin_token)
    made = await add_endpoint(client, tenant, "https://93.184.216.34/hooks", description="CRM")
    assert made["events"] == ["message.created"] and made["active"] is True and made["description"] == "CRM"
    assert made["secret"].startswith("whsec_") and len(base64.b64decode(made["secret"][6:])) >= 24
    listed = (await expect(await client.get("/api/webhooks", headers=admin), 200))["data"]["webhooks"]
    assert [w["id"] for w in listed] == [made["id"]] and "secret" not in listed[0]
    changed = await client.put(f"/api/webhooks/{made['id']}", headers=bearer(tenant.secret_key),  # sk keys may too
                               json={"events": ["conversation.closed", "rating.created", "rating.created"]})
    assert (await expect(changed, 200))["data"]["webhook"]["events"] == ["conversation.closed", "rating.created"]
    one = (await expect(await client.get(f"/api/webhooks/{made['id']}", headers=admin), 200))["data"]["webhook"]
    assert one["events"] == ["conversation.closed", "rating.created"] and "secret" not in one
    await expect(await client.delete(f"/api/webhooks/{made['id']}", headers=admin), 200)
    await expect_error(await client.get(f"/api/webhooks/{made['id']}", headers=admin), 404, "NOT_FOUND")


@pytest.mark.parametrize("body, field", [
    ({"url": "https://93.184.216.34/", "events": ["message.deleted"]}, "events.0"),
    ({"url": "https://93.184.216.34/", "events": []}, "events"),
    ({"url": "https://93.184.216.34/", "active": "true"}, "active"),
    ({"url": "https://93.184.216.34/\x00"}, "url"),
    ({"url": "https://93.184.216.34/", "secret": "mine"}, "secret"),
    ({"url": "https://93.184.216.34/" + "a" * 2048}, "url"),
    ({"url": "not a url"}, "url"),
    ({}, "url"),
])
async def test_bad_bodies_are_refused_and_nothing_is_written(aiohttp_client, make_app, redis_server, db_conn, body,
                                                             field):
    client, tenant, _ = await chat_app(aiohttp_client, make_app, redis_server[0])
    await expect_error(await client.post("/api/webhooks", json=body, headers=bearer(tenant.admin_token)), 400,
                       "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT count(*) FROM webhooks WHERE tenant_id = %s", tenant.id) == [(0,)]


async def test_only_the_tenants_admin_or_secret_key_reach_its_endpoints(aiohttp_client, make_app, redis_server):
    client, tenant, _ = await chat_app(aiohttp_client, make_app, redis_server[0])
    _, other, _ = await chat_app(aiohttp_client, make_app, redis_server[0])
    made = await add_endpoint(client, tenant, "https://93.184.216.34/")
    await expect_error(await client.get("/api/webhooks", headers=bearer(tenant.publishable_key)), 403, "FORBIDDEN")
    await expect_error(await client.get("/api/webhooks"), 401, "UNAUTHORIZED")
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/rotate-secret"), ("GET", "/deliveries"),
                         ("POST", "/test"), ("POST", "/deliveries/1/retry")):
        resp = await client.request(method, f"/api/webhooks/{made['id']}{path}", json={"active": False},
                                    headers=bearer(other.admin_token))
        await expect_error(resp, 404, "NOT_FOUND")
    await expect_error(await client.get("/api/webhooks/abc", headers=bearer(tenant.admin_token)), 404, "NOT_FOUND")


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/", "https://10.1.2.3/x", "https://192.168.0.10/", "https://172.16.5.5/",
    "https://169.254.169.254/latest/meta-data", "https://100.64.0.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/",
    "https://[fd00::1]/", "https://0.0.0.0/", "https://localhost/", "http://93.184.216.34/",
])
async def test_private_targets_are_refused_at_creation(aiohttp_client, make_app, redis_server, url):
    client, tenant, _ = await chat_app(aiohttp_client, make_app, redis_server[0], webhook_allow_private=False)
    await expect_error(await client.post("/api/webhooks", json={"url": url}, headers=bearer(tenant.admin_token)),
                       400, "VALIDATION_ERROR", "url")


async def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(aiohttp_client, make_app,
                                                                                redis_server, receiver, db_conn):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], webhook_allow_private=False)
    port = rec.url.rsplit(":", 1)[1].split("/")[0]
    for url in (f"http://localhost:{port}/hook", rec.url):  # made while they were public, say: the name, the literal
        fetch(db_conn, "INSERT INTO webhooks (tenant_id, url, secret) VALUES (%s, %s, 'whsec_AAAA') RETURNING id",
              tenant.id, url)
    await say(client.app, tenant, sid, "to a private address")
    assert await client.app[WEBHOOK_WORKER].run_once() == 2
    assert rec.got == []
    errors = fetch(db_conn, "SELECT last_error FROM webhook_deliveries WHERE tenant_id = %s", tenant.id)
    assert sorted(e for (e,) in errors) == ["refused: 127.0.0.1 is a private, loopback or reserved address"] * 2


async def test_redirects_are_not_followed(aiohttp_client, make_app, redis_server, receiver):
    target = await receiver()
    rec = await receiver([(302, {"Location": target.url})])
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, rec.url)
    await say(client.app, tenant, sid, "redirected")
    await client.app[WEBHOOK_WORKER].run_once()
    assert len(rec.got) == 1 and target.got == []
    (delivery,) = await deliveries(client, tenant, hook["id"])
    assert delivery["status"] == "pending" and delivery["statusCode"] == 302 and delivery["error"].startswith("HTTP 302")


async def test_a_rotated_secret_verifies_during_the_overlap_only(aiohttp_client, make_app, redis_server, receiver,
                                                                 db_conn):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, rec.url)
    rotated = await client.post(f"/api/webhooks/{hook['id']}/rotate-secret", headers=bearer(tenant.admin_token))
    new = (await expect(rotated, 200))["data"]["webhook"]
    assert new["secret"] != hook["secret"] and new["previousSecretExpiresAt"]
    await say(client.app, tenant, sid, "during the overlap")
    await client.app[WEBHOOK_WORKER].run_once()
    got = rec.got[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], new["secret"]):  # receivers on either secret accept it
        assert Webhook(secret).verify(got.body, got.headers)["data"]["text"] == "during the overlap"
    fetch(db_conn, "UPDATE webhooks SET previous_secret_until = now() - interval '1 second' WHERE id = %s RETURNING id",
          hook["id"])
    await say(client.app, tenant, sid, "after it")
    await client.app[WEBHOOK_WORKER].run_once()
    after = rec.got[1]
    assert Webhook(new["secret"]).verify(after.body, after.headers)["data"]["text"] == "after it"
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(after.body, after.headers)


async def test_410_turns_the_endpoint_off_and_the_tenant_sees_why(aiohttp_client, make_app, redis_server, receiver):
    rec = await receiver([410])
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, rec.url)
    await say(client.app, tenant, sid, "gone?")
    await client.app[WEBHOOK_WORKER].run_once()
    shown = (await expect(await client.get(f"/api/webhooks/{hook['id']}", headers=bearer(tenant.admin_token)),
                          200))["data"]["webhook"]
    assert shown["active"] is False and "410 Gone" in shown["disabledReason"] and shown["disabledAt"]
    assert [d["status"] for d in await deliveries(client, tenant, hook["id"])] == ["dead"]
    await say(client.app, tenant, sid, "not sent")
    await client.app[WEBHOOK_WORKER].run_once()
    assert len(rec.got) == 1
    again = await client.put(f"/api/webhooks/{hook['id']}", json={"active": True}, headers=bearer(tenant.admin_token))
    assert (await expect(again, 200))["data"]["webhook"]["disabledReason"] is None


async def test_an_endpoint_failing_for_a_day_is_turned_off(aiohttp_client, make_app, redis_server, receiver, db_conn):
    rec = await receiver([500])
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, rec.url)
    fetch(db_conn, "UPDATE webhooks SET failing_since = now() - interval '25 hours' WHERE id = %s RETURNING id",
          hook["id"])
    await say(client.app, tenant, sid, "still failing")
    await client.app[WEBHOOK_WORKER].run_once()
    shown = (await expect(await client.get(f"/api/webhooks/{hook['id']}", headers=bearer(tenant.admin_token)),
                          200))["data"]["webhook"]
    assert shown["active"] is False and shown["disabledReason"].startswith("Every attempt failed from")
    assert "HTTP 500" in shown["disabledReason"]


async def test_a_test_ping_and_a_manual_retry(aiohttp_client, make_app, redis_server, receiver):
    rec = await receiver([500, 200])
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], webhook_max_attempts=1)
    hook = await add_endpoint(client, tenant, rec.url)
    await say(client.app, tenant, sid, "fails once")
    await client.app[WEBHOOK_WORKER].run_once()
    (dead,) = await deliveries(client, tenant, hook["id"])
    assert dead["status"] == "dead" and dead["statusCode"] == 500
    retried = await client.post(f"/api/webhooks/{hook['id']}/deliveries/{dead['id']}/retry",
                                headers=bearer(tenant.admin_token))
    assert (await expect(retried, 202))["data"]["delivery"]["status"] == "pending"
    assert await client.app[WEBHOOK_WORKER].run_once() == 1
    assert rec.got[0].headers["webhook-id"] == rec.got[1].headers["webhook-id"]  # the same message again
    (done,) = await deliveries(client, tenant, hook["id"])
    assert done["status"] == "delivered" and done["id"] == dead["id"]
    ping = await expect(await client.post(f"/api/webhooks/{hook['id']}/test", headers=bearer(tenant.admin_token)), 200)
    assert ping["data"]["delivery"]["ok"] is True and ping["data"]["delivery"]["statusCode"] == 200
    body = Webhook(hook["secret"]).verify(rec.got[2].body, rec.got[2].headers)
    assert body["event"] == "ping" and body["data"] == {"webhookId": hook["id"], "tenantId": tenant.id}


async def test_workflow_events_reach_the_endpoints_that_want_them(aiohttp_client, make_app, redis_server, receiver):
    wants, ignores = await receiver(), await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, wants.url, events=["conversation.closed"])
    await add_endpoint(client, tenant, ignores.url)
    data = {"sessionId": sid, "tenantId": tenant.id, "closedBy": "agent", "agentId": 7}
    async with db.transaction(client.app[DB]) as conn:
        job = await webhooks.record_event(conn, tenant.id, "conversation.closed", data)
        with pytest.raises(ValueError):
            await webhooks.record_event(conn, tenant.id, "rating.created", {"sessionId": sid})
    await webhooks.announce_events(client.app[REDIS], [job])
    assert await client.app[WEBHOOK_WORKER].run_once() == 1
    body = Webhook(hook["secret"]).verify(wants.got[0].body, wants.got[0].headers)
    assert body["event"] == "conversation.closed" and body["data"] == data and body["timestamp"].endswith("Z")
    assert ignores.got == []


async def test_the_support_workflow_emits_its_events_to_the_endpoints(aiohttp_client, make_app, redis_server, receiver):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, rec.url, events=["conversation.escalated"])
    await expect(await client.post(f"/api/widgets/escalate/{tenant.site_key}/{sid}"), 200)
    await client.app[WEBHOOK_WORKER].run_once()
    (got,) = [r for r in rec.got if r.headers.get("webhook-id")]
    body = Webhook(hook["secret"]).verify(got.body, got.headers)
    assert body["event"] == "conversation.escalated"
    assert (body["data"]["sessionId"], body["data"]["tenantId"]) == (sid, tenant.id)


async def test_the_global_webhook_url_gets_every_tenants_messages(aiohttp_client, make_app, redis_server, receiver):
    rec, own = await receiver(), await receiver()
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], webhook_url=rec.url,
                                         webhook_secret=secret)
    hook = await add_endpoint(client, tenant, own.url)
    stored = await say(client.app, tenant, sid, "to both")
    assert await client.app[WEBHOOK_WORKER].run_once() == 2
    assert Webhook(secret).verify(rec.got[0].body, rec.got[0].headers)["data"]["messageId"] == stored.id
    assert Webhook(hook["secret"]).verify(own.got[0].body, own.got[0].headers)["data"]["messageId"] == stored.id
    assert rec.got[0].headers["webhook-id"] == own.got[0].headers["webhook-id"]
    await expect(await client.post(f"/api/webhooks/{hook['id']}/test", headers=bearer(tenant.admin_token)), 200)
    assert len(rec.got) == 1 and len(own.got) == 2  # a test ping goes to its endpoint only
