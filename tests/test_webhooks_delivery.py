"""Webhook delivery against a real local receiver: signed posts, retries, dead letters, crashes, Redis lost."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import redis.asyncio as aioredis
from standardwebhooks import Webhook

from amoiq_chat import db
from amoiq_chat.appkeys import DB, REDIS, SETTINGS, WEBHOOK_WORKER
from amoiq_chat.bus.rooms import WEBHOOK_DEAD_STREAM, WEBHOOK_STREAM
from amoiq_chat.workers.webhooks import GROUP, WebhookWorker

from .chat_fixtures import ServerProcess, make_tenant, session_id
from .factories import bearer, expect, fetch
from .webhook_fixtures import (HANG, add_endpoint, chat_app, deliveries, receiver, say,  # noqa: F401 - fixtures
                               settled_before)


async def test_one_message_gives_one_signed_post_with_the_seed_payload(aiohttp_client, make_app, redis_server, receiver):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, rec.url)
    stored = await say(client.app, tenant, sid, "Hello")
    assert await client.app[WEBHOOK_WORKER].run_once() == 1
    (got,) = rec.got
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)  # the reference implementation
    assert payload == {"event": "message.created", "timestamp": stored.row["timestamp"],
                       "data": {"messageId": stored.id, "sessionId": sid, "userId": None, "tenantId": tenant.id,
                                "text": "Hello", "senderType": "user"}}
    assert got.headers["User-Agent"].startswith("amoiq-chat/") and got.headers["Content-Type"] == "application/json"
    assert await client.app[WEBHOOK_WORKER].run_once() == 0  # once: nothing left
    await say(client.app, tenant, sid, "an AI reply", sender="ai")
    await client.app[WEBHOOK_WORKER].run_once()
    assert [Webhook(hook["secret"]).verify(r.body, r.headers)["data"]["senderType"] for r in rec.got] == ["user", "bot"]
    assert len({r.headers["webhook-id"] for r in rec.got}) == 2


async def test_500_500_200_is_three_attempts_with_one_id_and_growing_delays(aiohttp_client, make_app, redis_server,
                                                                           receiver):
    rec = await receiver([500, 500, 200])
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], background=True)
    hook = await add_endpoint(client, tenant, rec.url)
    await say(client.app, tenant, sid, "try, try again")
    got = await rec.wait_for(3)
    await client.app[WEBHOOK_WORKER].stop()  # lets the attempt under way finish and be recorded
    assert len(got) == 3 and len({r.headers["webhook-id"] for r in got}) == 1
    first, second = got[1].at - got[0].at, got[2].at - got[1].at
    assert 0.08 <= first < second, (first, second)
    assert all(Webhook(hook["secret"]).verify(r.body, r.headers) for r in got)
    (delivery,) = await deliveries(client, tenant, hook["id"])
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert delivery["statusCode"] == 200 and delivery["error"] is None


async def test_a_receiver_that_hangs_holds_up_no_other_endpoint(aiohttp_client, make_app, redis_server, receiver):
    slow, fast = await receiver([HANG]), await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], background=True,
                                         webhook_timeout=20.0, webhook_claim_idle=25.0)
    await add_endpoint(client, tenant, slow.url)
    await add_endpoint(client, tenant, fast.url)
    for n in range(3):
        await say(client.app, tenant, sid, f"message {n}")
        await fast.wait_for(n + 1, timeout=5)  # while the slow one's posts hang (for 20 s each)
    assert len(await slow.wait_for(3, timeout=5)) == 3


async def test_a_receiver_that_never_answers_ends_in_the_dead_letter_stream(aiohttp_client, make_app, redis_server,
                                                                           receiver):
    rec = await receiver([HANG])
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], webhook_timeout=0.3,
                                         webhook_retry_schedule=(0.1,))
    hook = await add_endpoint(client, tenant, rec.url)
    await say(client.app, tenant, sid, "anyone there?")
    worker = client.app[WEBHOOK_WORKER]
    assert await worker.run_once() == 1
    (delivery,) = await deliveries(client, tenant, hook["id"])
    assert delivery["status"] == "pending" and delivery["nextAttemptAt"] and "timed out" in delivery["error"]
    await asyncio.sleep(0.15)  # the retry's delay (0.1 s +- 20 %) has to pass: nothing else to wait on
    assert await worker.run_once() == 1
    (delivery,) = await deliveries(client, tenant, hook["id"])
    assert delivery["status"] == "dead" and delivery["attempts"] == 2 and delivery["nextAttemptAt"] is None
    assert delivery["error"] == "timed out after 0.3 s" and delivery["statusCode"] is None
    (entry,) = await client.app[REDIS].xrange(WEBHOOK_DEAD_STREAM)
    fields = {k.decode(): v.decode() for k, v in entry[1].items()}
    assert fields["delivery_id"] == str(delivery["id"]) and fields["error"] == "timed out after 0.3 s"
    assert fields["attempts"] == "2" and fields["webhook_id"] == str(hook["id"])
    assert len(rec.got) == 2


async def test_a_job_read_by_a_consumer_that_died_is_claimed_and_delivered(aiohttp_client, make_app, redis_server,
                                                                           receiver):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    hook = await add_endpoint(client, tenant, rec.url)
    stored = await say(client.app, tenant, sid, "read, never acked")
    app = client.app
    doomed = WebhookWorker(app[DB], app[REDIS], app[SETTINGS], consumer="doomed")
    (entry,) = await doomed.read(10)  # read, then the consumer dies: never fanned out, never acked
    await doomed.deliverer.close()
    other = app[WEBHOOK_WORKER]
    assert await other.run_once() == 0  # not idle for WEBHOOK_CLAIM_IDLE yet: nobody takes it
    pending = await app[REDIS].xpending(WEBHOOK_STREAM, GROUP)
    assert pending["pending"] == 1 and pending["consumers"] == [{"name": b"doomed", "pending": 1}]
    await asyncio.sleep(app[SETTINGS].webhook_claim_idle)  # the idle time is what is being tested
    assert await other.run_once() == 1
    (got,) = rec.got
    assert Webhook(hook["secret"]).verify(got.body, got.headers)["data"]["messageId"] == stored.id
    assert (await app[REDIS].xpending(WEBHOOK_STREAM, GROUP))["pending"] == 0


async def test_redis_flushed_and_its_clients_killed_mid_run_loses_no_job(aiohttp_client, make_app, redis_server,
                                                                        receiver, db_conn):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], background=True)
    await add_endpoint(client, tenant, rec.url)
    app = client.app
    first = [asyncio.create_task(say(app, tenant, sid, f"before {n}")) for n in range(30)]
    await rec.wait_for(1)  # deliveries under way
    await app[REDIS].flushall()  # the stream, the group and its pending entries: gone
    await app[REDIS].execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    later = [asyncio.create_task(say(app, tenant, sid, f"after {n}")) for n in range(30)]
    await asyncio.gather(*first, *later, return_exceptions=True)
    stored = {row[0] for row in fetch(db_conn, "SELECT id::text FROM messages WHERE tenant_id = %s", tenant.id)}
    assert len(stored) == 60  # counted against the messages table: every stored message arrives

    def delivered(got) -> set[str]:
        return {json.loads(r.body)["data"]["messageId"] for r in got}

    got = await rec.wait_until(lambda got: stored <= delivered(got), timeout=30)
    assert delivered(got) == stored


async def test_a_process_killed_before_acking_has_its_job_delivered_by_the_other(settings, redis_server, receiver,
                                                                                 db_conn):
    rec = await receiver([HANG, 200])  # the first post is never answered
    env = {"REDIS_URL": redis_server[0], "WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_TIMEOUT": "5",
           "WEBHOOK_CLAIM_IDLE": "6"}
    pool = await db.create_pool(settings.database_url, 1, 2)
    redis = aioredis.Redis.from_url(redis_server[0])
    servers = [ServerProcess(settings, **env), ServerProcess(settings, **env)]
    holder = servers[0]
    try:
        for server in servers:
            server.wait()
        tenant = await make_tenant(pool, settings, agents=0)
        async with aiohttp.ClientSession(servers[0].url) as http:
            made = await http.post("/api/webhooks", json={"url": rec.url}, headers=bearer(tenant.admin_token))
            hook = (await expect(made, 201))["data"]["webhook"]
            sent = await http.post("/api/chat/messages", json={"tenantId": tenant.id, "sessionId": session_id(),
                                                               "text": "mid-flight"}, headers=tenant.bearer())
            message_id = (await expect(sent, 200))["messageId"]
        await rec.wait_for(1)  # one process read the job and is posting it: which one?
        (entry,) = await redis.xpending_range(WEBHOOK_STREAM, GROUP, min="-", max="+", count=10)
        pid = int(entry["consumer"].decode().split("-")[-2])
        holder, other = sorted(servers, key=lambda s: s.process.pid != pid)
        assert holder.process.pid == pid
        holder.kill()  # no outcome recorded, no ack
        got = await rec.wait_for(2, timeout=30)
        assert len({r.headers["webhook-id"] for r in got}) == 1  # the same job, delivered by the other
        assert Webhook(hook["secret"]).verify(got[1].body, got[1].headers)["data"]["messageId"] == message_id
    finally:
        holder.kill()
        logs = "".join(server.stop() for server in servers if server is not holder)
        await redis.aclose()
        pool.close()
        await pool.wait_closed()
    assert "Traceback" not in logs, logs
    assert fetch(db_conn, "SELECT d.status, d.attempts, d.last_status FROM webhook_deliveries d"
                          " WHERE d.webhook_id = %s", hook["id"]) == [("delivered", 1, 200)]


async def test_a_job_whose_entry_redis_lost_is_added_again_by_the_reconciler(aiohttp_client, make_app, redis_server,
                                                                            receiver, db_conn):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    await add_endpoint(client, tenant, rec.url)
    app, worker = client.app, client.app[WEBHOOK_WORKER]
    stored = await say(app, tenant, sid, "lost with the stream")
    await app[REDIS].delete(WEBHOOK_STREAM)  # Redis lost it (and the group with it)
    assert await worker.run_once() == 0 and await worker.reconcile() == 0  # too young to be taken for lost
    await asyncio.sleep(app[SETTINGS].webhook_reconcile_after)  # the timeout is what is being tested
    assert await worker.reconcile() == 1
    assert await worker.run_once() == 1
    assert json.loads(rec.got[0].body)["data"]["messageId"] == stored.id
    assert fetch(db_conn, "SELECT status FROM webhook_outbox WHERE message_id = %s", stored.id) == [("delivered",)]
    assert await worker.reconcile() == 0  # settled: never again


async def test_the_stream_is_trimmed_only_below_what_every_group_settled(aiohttp_client, make_app, redis_server,
                                                                        receiver):
    rec = await receiver()
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0])
    await add_endpoint(client, tenant, rec.url)
    app, worker, redis = client.app, client.app[WEBHOOK_WORKER], client.app[REDIS]
    for n in range(3):
        await say(app, tenant, sid, f"settled {n}")
    assert await worker.run_once() == 3
    unread = await say(app, tenant, sid, "not read yet")
    await worker.trim()  # settled, but within the last minute: kept
    assert await redis.xlen(WEBHOOK_STREAM) == 4
    await redis.xgroup_create(WEBHOOK_STREAM, "audit", id="0")  # another group that has read nothing
    await worker.trim(keep_ms=0)
    assert await redis.xlen(WEBHOOK_STREAM) == 4
    await redis.xgroup_destroy(WEBHOOK_STREAM, "audit")
    await worker.trim(keep_ms=0)
    (left,) = await redis.xrange(WEBHOOK_STREAM)  # only what no group has read
    assert left[1][b"message_id"] == unread.id.encode()
