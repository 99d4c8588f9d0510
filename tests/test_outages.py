"""Outages are named: a message refused because PostgreSQL or Redis went away is SERVICE_UNAVAILABLE
(503, retryable with the same clientMessageId), never INTERNAL_ERROR."""
from __future__ import annotations

import asyncio
import logging
import time

import psycopg2
import pytest
import redis.exceptions

from amoiq_chat import db
from amoiq_chat.appkeys import DB, SETTINGS
from amoiq_chat.outages import failure
from amoiq_chat.services.batches import WRITER_APPLICATION_NAME

from .chat_fixtures import make_tenant, session_id, until


def end_writer_connections(db_conn) -> int:
    """Terminate the writer's PostgreSQL backends of this test database (a failover does the same)."""
    with db_conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = %s", (WRITER_APPLICATION_NAME,))
        return len(cur.fetchall())


@pytest.mark.parametrize("exc, status, code", [
    (psycopg2.OperationalError("terminating connection due to administrator command"), 503, "SERVICE_UNAVAILABLE"),
    (psycopg2.InterfaceError("connection already closed"), 503, "SERVICE_UNAVAILABLE"),
    (redis.exceptions.ConnectionError("Connection closed by server."), 503, "SERVICE_UNAVAILABLE"),
    (TimeoutError(), 503, "SERVICE_UNAVAILABLE"),
    (ConnectionRefusedError(111, "Connection refused"), 503, "SERVICE_UNAVAILABLE"),
    (psycopg2.errors.CheckViolation("new row violates check constraint"), 500, "INTERNAL_ERROR"),
    (KeyError("id"), 500, "INTERNAL_ERROR"),
])
def test_an_outage_is_retryable_and_a_bug_is_internal(exc, status, code):
    error = failure(exc, "could not store")
    assert (error.status, error.code, error.message) == (status, code, "could not store")
    assert error.details["reason"] == type(exc).__name__
    assert error.details.get("retryable", False) is (status == 503)
    assert ("Retry-After" in error.headers) is (status == 503)


async def test_a_socket_message_refused_by_a_lost_connection_is_retryable_and_stored_once(aiohttp_client, make_app,
                                                                                          db_conn, caplog):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=0)
    sid = session_id()
    ws = await client.ws_connect(f"/ws/{sid}")
    await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": "one", "clientMessageId": "m-1"})
    assert (await until(ws, "ack"))["seq"] == 1
    assert end_writer_connections(db_conn) == 1
    frame = {"type": "message", "message": "two", "clientMessageId": "m-2"}
    with caplog.at_level(logging.WARNING):
        await ws.send_json(frame)
        error = await until(ws, "error")
    assert (error["code"], error["clientMessageId"], error["frameType"]) == ("SERVICE_UNAVAILABLE", "m-2", "message")
    assert not any(r.levelno >= logging.ERROR and r.name.startswith("amoiq_chat.ws") for r in caplog.records)
    await ws.send_json(frame)  # the client's retry, same clientMessageId
    again = await until(ws, "ack")
    assert (again["seq"], again["duplicate"]) == (2, False)
    await ws.send_json(frame)  # a retry of a message that was stored: acked again, not stored again
    assert (await until(ws, "ack"))["duplicate"] is True
    with db_conn.cursor() as cur:
        cur.execute("SELECT seq, message FROM messages WHERE session_id = %s ORDER BY seq", (sid,))
        assert cur.fetchall() == [(1, "one"), (2, "two")]
    await ws.close()


async def test_a_rest_message_refused_by_a_lost_connection_is_503_with_retry_after(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=0)
    sid = session_id()
    body = {"tenantId": tenant.id, "sessionId": sid, "siteKey": tenant.site_key, "text": "hello", "clientMessageId": "r-1"}
    first = await client.post("/webchat/message", json={**body, "clientMessageId": "r-0"}, headers=tenant.bearer())
    assert first.status == 200, await first.text()
    body["sessionSecret"] = (await first.json())["sessionSecret"]  # resuming it takes its secret
    assert end_writer_connections(db_conn) == 1
    refused = await client.post("/webchat/message", json=body, headers=tenant.bearer())
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    envelope = await refused.json()
    assert (envelope["success"], envelope["code"], envelope["details"]["retryable"]) == (False, "SERVICE_UNAVAILABLE", True)
    retried = await client.post("/webchat/message", json=body, headers=tenant.bearer())
    assert retried.status == 200
    assert ((await retried.json())["seq"], (await retried.json())["duplicate"]) == (2, False)
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM messages WHERE session_id = %s AND client_message_id = 'r-1'", (sid,))
        assert cur.fetchone() == (1,)


async def test_a_request_waiting_for_a_pooled_connection_gets_a_new_one_when_the_one_in_use_dies(settings, db_conn):
    pool = await db.create_pool(settings.database_url, 1, 1)
    try:
        async with pool.acquire() as busy:
            pid = (await db.fetch_one(busy, "SELECT pg_backend_pid() AS pid"))["pid"]
            waiting = asyncio.ensure_future(_select_one(pool))  # waits: the pool's one connection is in use
            for _ in range(5):
                await asyncio.sleep(0)  # (the waiter's turns: it finds no free connection and waits)
            assert not waiting.done()
            with db_conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(psycopg2.OperationalError):
                await db.fetch_one(busy, "SELECT 1")
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, 5) == 1  # not after the pool's 10 s wait
        assert time.monotonic() - started < 5
    finally:
        pool.close()
        await pool.wait_closed()


async def _select_one(pool) -> int:
    async with pool.acquire() as conn:
        return (await db.fetch_one(conn, "SELECT 1 AS one"))["one"]
