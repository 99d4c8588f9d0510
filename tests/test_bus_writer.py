"""The write path and the bus: batching, gapless seqs, all-or-nothing batches, bad events, slow peers, Redis
restarts and stalls, a lost database connection."""
from __future__ import annotations

import asyncio
import subprocess

import pytest

from amoiq_chat import credentials
from amoiq_chat.bus import FOR_STAFF, encode_event
from amoiq_chat.errors import ServiceUnavailable
from amoiq_chat.appkeys import BUS, DB, REDIS, SETTINGS, WRITER
from amoiq_chat.services import sessions
from amoiq_chat.services.batches import WRITER_APPLICATION_NAME, Draft

from .chat_fixtures import closed_with, make_tenant, recv, session_id, until
from .conftest import wait_for_port


async def open_sessions(app, tenant, n):
    """`n` new sessions of the tenant's widget (their sessionSecret kept in `tenant`)."""
    ids = [session_id() for _ in range(n)]
    async with app[DB].acquire() as conn:
        for sid in ids:
            secret, secret_hash = credentials.new_session_secret()
            await sessions.ensure_session(conn, tenant.id, sid, site_key=tenant.site_key, secret_hash=secret_hash)
            tenant.keep_secret(sid, {"sessionSecret": secret})
    return ids


def add_endpoint(db_conn, tenant_id: str) -> None:
    """An active endpoint of the tenant wanting message.created (its default events)."""
    with db_conn.cursor() as cur:
        cur.execute("INSERT INTO webhooks (tenant_id, url, secret) VALUES (%s, 'https://hooks.example.com/in', 'whsec_x')",
                    (tenant_id,))


async def test_concurrent_messages_are_batched_with_gapless_seqs(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app())
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    quiet = await make_tenant(app[DB], app[SETTINGS], agents=0)  # no endpoint: stream entries, no outbox rows
    add_endpoint(db_conn, tenant.id)
    ids = await open_sessions(app, tenant, 4)
    (quiet_sid,) = await open_sessions(app, quiet, 1)
    writer = app[WRITER]
    batches_before = writer.batches
    stream_before = await app[REDIS].xrevrange("meta:webhook_jobs", count=1)
    drafts = [Draft(tenant.id, ids[n % 4], "visitor", f"m{n}", client_message_id=f"c{n}") for n in range(200)]
    quiet_drafts = [Draft(quiet.id, quiet_sid, "visitor", f"q{n}") for n in range(20)]
    stored, quiet_stored = await asyncio.gather(asyncio.gather(*(writer.submit(d) for d in drafts)),
                                                asyncio.gather(*(writer.submit(d) for d in quiet_drafts)))
    assert writer.batches - batches_before < 50
    for sid in ids:
        seqs = sorted(s.seq for s in stored if s.row["session_id"] == sid)
        assert seqs == list(range(1, 51))
    twice = Draft(tenant.id, ids[0], "visitor", "same twice", client_message_id="twice")
    first, second = await asyncio.gather(writer.submit(twice), writer.submit(twice))  # one batch
    assert (first.id, first.seq, first.duplicate) == (second.id, 51, False) and second.duplicate is True
    again = await asyncio.gather(*(writer.submit(d) for d in drafts[:10]))
    assert [(s.id, s.seq, s.duplicate) for s in again] == [(s.id, s.seq, True) for s in stored[:10]]
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT (session_id, seq)) FROM messages WHERE tenant_id = %s", (tenant.id,))
        assert cur.fetchone() == (201, 201)
        cur.execute("SELECT last_seq FROM sessions WHERE session_id = ANY(%s) ORDER BY last_seq", (ids,))
        assert [r[0] for r in cur.fetchall()] == [50, 50, 50, 51]
        cur.execute("SELECT count(*) FROM webhook_outbox WHERE tenant_id = %s", (tenant.id,))
        assert cur.fetchone() == (201,)
        cur.execute("SELECT m.id::text, o.id FROM messages m JOIN webhook_outbox o ON o.message_id = m.id"
                    " WHERE m.tenant_id = %s", (tenant.id,))
        stored_jobs = {(message_id, str(outbox_id)) for message_id, outbox_id in cur.fetchall()}
    await writer.settled()  # the futures resolve as the announcement leaves, not when Redis answers
    since = f"({stream_before[0][0].decode()}" if stream_before else "-"
    jobs = await app[REDIS].xrange("meta:webhook_jobs", min=since)
    ours = [(f[b"message_id"].decode(), f[b"outbox_id"].decode()) for _, f in jobs if f[b"tenant_id"] == tenant.id.encode()]
    assert len(ours) == 201 and set(ours) == stored_jobs  # each stored message appended once, with its outbox row
    # a tenant without an endpoint: every message on the stream (without an outbox id), none in the outbox
    theirs = [f for _, f in jobs if f[b"tenant_id"] == quiet.id.encode()]
    assert sorted(f[b"message_id"].decode() for f in theirs) == sorted(s.id for s in quiet_stored)
    assert all(b"outbox_id" not in f for f in theirs)
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM webhook_outbox WHERE tenant_id = %s", (quiet.id,))
        assert cur.fetchone() == (0,)


async def test_several_writer_shards_store_and_announce_every_message(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app(writer_shards=3))
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    ids = await open_sessions(app, tenant, 12)
    writer = app[WRITER]
    stream_before = await app[REDIS].xrevrange("meta:webhook_jobs", count=1)

    async def sender(sid):  # one message at a time, as a socket sends: the shards' batches interleave
        return [(await writer.submit(Draft(tenant.id, sid, "visitor", f"m{n}"))).seq for n in range(15)]

    seqs = await asyncio.wait_for(asyncio.gather(*(sender(sid) for sid in ids)), 20)
    assert seqs == [list(range(1, 16))] * len(ids)
    await asyncio.wait_for(writer.settled(), 10)
    with db_conn.cursor() as cur:
        cur.execute("SELECT id::text FROM messages WHERE tenant_id = %s", (tenant.id,))
        stored_ids = {r[0] for r in cur.fetchall()}
    since = f"({stream_before[0][0].decode()}" if stream_before else "-"
    jobs = await app[REDIS].xrange("meta:webhook_jobs", min=since)
    ours = [f[b"message_id"].decode() for _, f in jobs if f[b"tenant_id"] == tenant.id.encode()]
    assert len(stored_ids) == 180 and len(ours) == 180 and set(ours) == stored_ids


async def lingering_session(aiohttp_client, make_app):
    """A tenant's session, and the writer of an app whose batches linger 50 ms."""
    client = await aiohttp_client(make_app(writer_linger_ms=50))
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    (sid,) = await open_sessions(app, tenant, 1)
    return tenant, sid, app[WRITER]


async def two_messages_apart(writer, tenant, sid) -> tuple[int, int]:
    """The seqs of two messages sent 10 ms apart (well inside a 50 ms linger)."""
    first = asyncio.create_task(writer.submit(Draft(tenant.id, sid, "visitor", "first")))
    await asyncio.sleep(0.01)
    second = await writer.submit(Draft(tenant.id, sid, "visitor", "second"))
    return (await first).seq, second.seq


def transactions(db_conn, sid) -> dict[int, str]:
    """seq -> the transaction (xmin) that stored it, for a session's messages."""
    with db_conn.cursor() as cur:
        cur.execute("SELECT seq, xmin::text FROM messages WHERE session_id = %s", (sid,))
        return dict(cur.fetchall())


async def test_with_a_linger_messages_sent_apart_share_one_transaction(aiohttp_client, make_app, db_conn):
    tenant, sid, writer = await lingering_session(aiohttp_client, make_app)
    assert await two_messages_apart(writer, tenant, sid) == (1, 2)
    assert (await writer.submit(Draft(tenant.id, sid, "visitor", "third"))).seq == 3
    xmin = transactions(db_conn, sid)
    assert xmin[1] == xmin[2] != xmin[3]


async def test_after_a_full_batch_the_next_message_is_stored_without_lingering(aiohttp_client, make_app, db_conn):
    # A writer whose last batch was big stores what it finds at once: senders that wait for their acks
    # (all of that batch's) would each pay the linger, and more are on their way anyway. Two messages
    # 10 ms apart then get two transactions, where after a small batch (the test above) they share one.
    tenant, sid, writer = await lingering_session(aiohttp_client, make_app)
    burst = await asyncio.gather(*(writer.submit(Draft(tenant.id, sid, "visitor", f"burst {n}")) for n in range(10)))
    assert [s.seq for s in burst] == list(range(1, 11))
    assert await two_messages_apart(writer, tenant, sid) == (11, 12)
    xmin = transactions(db_conn, sid)
    assert len({xmin[n] for n in range(1, 11)}) == 1  # the burst: one batch
    assert len({xmin[1], xmin[11], xmin[12]}) == 3


async def test_a_draft_that_cannot_be_stored_fails_alone_and_its_batch_mates_are_stored(aiohttp_client, make_app,
                                                                                          db_conn):
    client = await aiohttp_client(make_app())
    app = client.app
    tenant, other = [await make_tenant(app[DB], app[SETTINGS], agents=0) for _ in range(2)]
    (sid,) = await open_sessions(app, tenant, 1)
    theirs = await open_sessions(app, other, 10)
    batches_before = app[WRITER].batches
    good = [Draft(other.id, theirs[n], "visitor", f"fine {n}") for n in range(10)]
    nul = Draft(tenant.id, sid, "visitor", "poison \u0000 here")
    martian = Draft(tenant.id, sid, "martian", "breaks the CHECK constraint")
    drafts = good[:5] + [nul] + good[5:] + [martian]
    results = await asyncio.gather(*(app[WRITER].submit(d) for d in drafts), return_exceptions=True)
    assert app[WRITER].batches - batches_before >= 2  # the first try was one batch, refused whole
    assert getattr(results[5], "code", None) == "VALIDATION_ERROR" and results[5].errors == {"text": "cannot be stored"}
    assert getattr(results[-1], "code", None) == "INTERNAL_ERROR"
    stored = results[:5] + results[6:-1]
    assert [s.seq for s in stored] == [1] * 10
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM messages WHERE session_id = %s", (sid,))
        assert cur.fetchone() == (0,)
        cur.execute("SELECT last_seq FROM sessions WHERE session_id = %s", (sid,))
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*), count(DISTINCT session_id) FROM messages WHERE tenant_id = %s", (other.id,))
        assert cur.fetchone() == (10, 10)
    later = await app[WRITER].submit(Draft(tenant.id, sid, "visitor", "fine"))
    assert later.seq == 1
    missing = await asyncio.gather(app[WRITER].submit(Draft(tenant.id, session_id(), "visitor", "x")), return_exceptions=True)
    assert missing[0].code == "SESSION_NOT_FOUND"


async def test_the_writer_opens_a_new_connection_after_losing_its_own(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app())
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    add_endpoint(db_conn, tenant.id)
    (sid,) = await open_sessions(app, tenant, 1)
    writer = app[WRITER]
    assert (await writer.submit(Draft(tenant.id, sid, "visitor", "first"))).seq == 1
    with db_conn.cursor() as cur:  # an administrator, a failover or a network cut ends it
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = %s", (WRITER_APPLICATION_NAME,))
        assert cur.fetchall() == [(True,)]
    with pytest.raises(ServiceUnavailable) as refused:  # the batch that finds it gone fails whole: the sender retries
        await writer.submit(Draft(tenant.id, sid, "visitor", "second", client_message_id="second"))
    assert (refused.value.status, refused.value.code, refused.value.details["retryable"]) == (503, "SERVICE_UNAVAILABLE", True)
    again = await writer.submit(Draft(tenant.id, sid, "visitor", "second", client_message_id="second"))
    assert (again.seq, again.duplicate) == (2, False)
    with db_conn.cursor() as cur:
        cur.execute("SELECT seq, message FROM messages WHERE session_id = %s ORDER BY seq", (sid,))
        assert cur.fetchall() == [(1, "first"), (2, "second")]
        cur.execute("SELECT count(*) FROM webhook_outbox o JOIN messages m ON m.id = o.message_id WHERE m.session_id = %s",
                    (sid,))
        assert cur.fetchone() == (2,)


async def test_a_malformed_event_is_skipped_and_the_bus_goes_on(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    admin = await client.ws_connect(f"/ws/agent/{tenant.admin_id}?token={tenant.admin_token}")
    await recv(admin)
    await app[REDIS].publish(f"admin:{tenant.id}", b"\xff not an event")
    await app[REDIS].publish(f"admin:{tenant.id}", b'{"a": "ss"}\nonly-one-frame')
    await app[BUS].publish(f"admin:{tenant.id}", encode_event([(FOR_STAFF, b'{"type":"user_online","userId":"u1"}')]))
    assert (await recv(admin)) == {"type": "user_online", "userId": "u1"}
    await admin.close()


async def test_a_peer_that_cannot_keep_up_is_disconnected(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(ws_send_buffer=1_000_000))
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    (sid,) = await open_sessions(app, tenant, 1)
    slow = await client.ws_connect(f"/ws/{sid}")
    await recv(slow)
    await slow.send_json({"type": "join", "siteKey": tenant.site_key, **tenant.proof(sid)})
    await until(slow, "connection_status")
    fast = await client.ws_connect(f"/ws/{sid}")
    await recv(fast)
    await fast.send_json({"type": "join", "siteKey": tenant.site_key, **tenant.proof(sid)})
    await until(fast, "connection_status")
    big = "x" * 9000
    reader = asyncio.ensure_future(_drain(fast, 3000))
    for _ in range(30):  # bursts of 100, which a reading tab keeps up with
        await asyncio.gather(*(app[WRITER].submit(Draft(tenant.id, sid, "agent", big, metadata={"agentName": "A"}))
                               for _ in range(100)))
    assert await reader == 3000  # the tab that reads got every message
    # 1013 when the close frame gets through; 1006 when its buffers stayed too full to send it.
    assert await closed_with(slow, timeout=20) in (1013, 1006)
    await fast.close()


async def _drain(ws, wanted):
    seen = 0
    while seen < wanted:
        frame = await recv(ws, 20)
        seen += frame["type"] == "message"
    return seen


async def joined_visitor(aiohttp_client, app):
    """A tenant, one session in it and its visitor socket, joined: (app, tenant, session id, socket)."""
    client = await aiohttp_client(app)
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=0)
    (sid,) = await open_sessions(client.app, tenant, 1)
    ws = await client.ws_connect(f"/ws/{sid}")
    await recv(ws)
    await ws.send_json({"type": "join", "siteKey": tenant.site_key, **tenant.proof(sid)})
    await until(ws, "connection_status")
    return client.app, tenant, sid, ws


async def test_a_stalled_redis_does_not_hold_back_acks_and_the_jobs_follow(aiohttp_client, make_app, redis_server):
    url, _ = redis_server
    app, tenant, sid, ws = await joined_visitor(aiohttp_client, make_app(redis_url=url))
    redis = app[REDIS]
    await redis.execute_command("CLIENT", "PAUSE", 20000, "WRITE")  # PUBLISH, XADD and scripts wait; reads go on
    try:
        await ws.send_json({"type": "message", "message": "while Redis stalls", "clientMessageId": "stall-1"})
        ack = await until(ws, "ack")  # stored and acknowledged without Redis
        echoed = await until(ws, "meta_message_created")  # this process's sockets get it without Redis too
        assert echoed["message"]["id"] == ack["id"]
        assert await redis.xlen("meta:webhook_jobs") == 0
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    await app[WRITER].settled()
    jobs = await redis.xrange("meta:webhook_jobs")
    assert [f[b"message_id"].decode() for _, f in jobs] == [ack["id"]]
    await ws.close()


async def test_the_bus_resubscribes_after_redis_restarts(aiohttp_client, make_app, redis_server):
    url, process = redis_server
    app, tenant, sid, ws = await joined_visitor(aiohttp_client, make_app(redis_url=url))
    await app[WRITER].submit(Draft(tenant.id, sid, "agent", "before the restart", metadata={"agentName": "A"}))
    await until(ws, "message")
    await app[WRITER].settled()  # the writer's own Redis connection is open, to the Redis about to go

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    args = process.args
    app[BUS].reconnected.clear()
    process.terminate()
    process.wait(10)
    restarted = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, restarted)
        await asyncio.wait_for(app[BUS].reconnected.wait(), 15)
        stored = await app[WRITER].submit(Draft(tenant.id, sid, "agent", "after the restart", metadata={"agentName": "A"}))
        frame = await until(ws, "message", timeout=10)
        assert frame["id"] == stored.id
        # announced on the new Redis: a new connection, and the script loaded again (NOSCRIPT)
        await app[WRITER].settled()
        jobs = await app[REDIS].xrange("meta:webhook_jobs")
        assert [f[b"message_id"].decode() for _, f in jobs] == [stored.id]
    finally:
        await ws.close()
        restarted.terminate()
        restarted.wait(10)
