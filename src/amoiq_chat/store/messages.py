"""SQL for messages: reading them back (history, replay, pages) and the writer's batch statement."""
from __future__ import annotations

import datetime as dt
from typing import Any

import aiopg

from .. import db

COLUMNS = ("id, tenant_id, session_id, seq, sender_type, sender_id, user_id, message, message_type,"
           " client_message_id, metadata, created_at")
REPLAY_PAGE = 500


async def messages_after(conn: aiopg.Connection, session_id: str, after: int, upto: int | None = None,
                         limit: int = REPLAY_PAGE) -> list[dict]:
    """Messages of a session with after < seq <= upto, in seq order."""
    return await db.fetch_all(
        conn,
        f"SELECT {COLUMNS} FROM messages WHERE session_id = %s AND seq > %s"
        " AND (%s::bigint IS NULL OR seq <= %s::bigint) ORDER BY seq LIMIT %s",
        (session_id, after, upto, upto, limit),
    )


async def session_history(conn: aiopg.Connection, session_id: str) -> list[dict]:
    """Every message of a session, oldest first."""
    return await db.fetch_all(conn, f"SELECT {COLUMNS} FROM messages WHERE session_id = %s ORDER BY seq", (session_id,))


async def page(conn: aiopg.Connection, tenant_id: str, *, session_id: str | None, user_id: str | None,
               before: str | None, limit: int) -> tuple[list[dict], bool]:
    """Up to `limit` messages before the message `before` (or the newest), oldest first; and whether more exist.

    With `user_id` the messages of all that user's sessions of the tenant; else those of `session_id`.
    """
    where = ["m.tenant_id = %s"]
    params: list[Any] = [tenant_id]
    if user_id is not None:
        where.append("m.session_id IN (SELECT session_id FROM sessions WHERE tenant_id = %s AND user_id = %s)")
        params += [tenant_id, user_id]
    if session_id is not None:
        where.append("m.session_id = %s")
        params.append(session_id)
    if before is not None and user_id is None:
        where.append("m.seq < (SELECT seq FROM messages WHERE id = %s)")
        params.append(before)
    elif before is not None:
        where.append("(m.created_at, m.seq, m.id) < (SELECT created_at, seq, id FROM messages WHERE id = %s)")
        params.append(before)
    # One session: seq order. Several: time order (seq breaks ties within a session).
    order = "m.seq DESC" if user_id is None else "m.created_at DESC, m.seq DESC, m.id DESC"
    rows = await db.fetch_all(
        conn,
        f"SELECT {', '.join('m.' + c.strip() for c in COLUMNS.split(','))} FROM messages m"
        f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s",
        (*params, limit + 1),
    )
    more = len(rows) > limit
    return list(reversed(rows[:limit])), more


async def find_by_ids(conn: aiopg.Connection, message_ids: list[str]) -> list[dict]:
    """Messages by id (any tenant: the caller knows them)."""
    return await db.fetch_all(conn, f"SELECT {COLUMNS} FROM messages WHERE id = ANY(%s::uuid[])", (message_ids,))


async def find_message(conn: aiopg.Connection, tenant_id: str, message_id: str) -> dict | None:
    """One message of the tenant by id."""
    return await db.fetch_one(conn, f"SELECT {COLUMNS} FROM messages WHERE id = %s AND tenant_id = %s",
                              (message_id, tenant_id))


# The writer's batch ----------------------------------------------------------------------

# One statement stores a batch, prepared on each writer's connection (planning it cost as
# much PostgreSQL CPU as running it). $1 is a JSON array of drafts, `o` their place in it; $2
# the batch's time; $3 true when every message has a webhook job (the global WEBHOOK_URL). Rows
# come back for the drafts stored now (o, id, seq, created_at when it is not $2), for repeated
# clientMessageIds (o, id) and for the outbox rows (o = -1, message id, outbox id); a draft
# without a row has no session (or not in its tenant).
#
# An outbox row is written only for a message whose tenant has an endpoint that wants it (or
# when the global URL is set): most tenants have none, and the row (an insert, then its update
# once settled) was a third of PostgreSQL's work per message (bench/README, "webhook outbox").
#
# A prepared statement keeps the plan it made with the statistics of its time (empty tables,
# on a new database), and a plan that reads whole tables costs more with every message
# stored. So sessions and earlier messages are reached one input row at a time (LATERAL ...
# LIMIT, never flattened into a join), the writer's connections have sequential scans off
# (PREPARE_SETTINGS), and the statement is prepared again every REPREPARE seconds, with the
# statistics of the day (which index answers a probe still depends on them).
STORE_BATCH = """
WITH input AS (
    SELECT * FROM json_to_recordset($1) AS i(
        o int, tenant_id text, session_id text, sender_type text, sender_id text, user_id text,
        message text, message_type text, client_message_id text, metadata jsonb)
),
locked AS MATERIALIZED (
    -- Locked in session_id order, so writers never wait on each other in a cycle; FOR UPDATE
    -- reads the newest committed last_seq, so seqs stay gapless across processes.
    SELECT s.* FROM (SELECT DISTINCT session_id FROM input ORDER BY session_id) i,
    LATERAL (SELECT session_id, tenant_id, last_seq, last_activity_at FROM sessions
             WHERE sessions.session_id = i.session_id FOR UPDATE) s
),
repeated AS (
    SELECT i.o, m.id FROM input i,
    LATERAL (SELECT id, tenant_id FROM messages m WHERE m.session_id = i.session_id
             AND m.client_message_id = i.client_message_id LIMIT 1) m
    WHERE i.client_message_id IS NOT NULL AND m.tenant_id = i.tenant_id
),
fresh AS MATERIALIZED (
    SELECT i.*, gen_random_uuid() AS id,
           l.last_seq + row_number() OVER (PARTITION BY i.session_id ORDER BY i.o) AS seq,
           -- never earlier than the session's last activity: a later seq never has an earlier time
           greatest($2, l.last_activity_at) AS created_at
    FROM input i JOIN locked l ON l.session_id = i.session_id AND l.tenant_id = i.tenant_id
    WHERE NOT EXISTS (SELECT 1 FROM repeated r WHERE r.o = i.o)
),
inserted AS (
    INSERT INTO messages (id, tenant_id, session_id, seq, sender_type, sender_id, user_id, message,
                          message_type, client_message_id, metadata, created_at)
    SELECT id, tenant_id, session_id, seq, sender_type, sender_id, user_id, message, message_type,
           client_message_id, metadata, created_at FROM fresh
),
advanced AS (
    UPDATE sessions s SET last_seq = f.top, last_activity_at = f.latest
    FROM (SELECT session_id, max(seq) AS top, max(created_at) AS latest FROM fresh GROUP BY session_id) f
    WHERE s.session_id = f.session_id
),
hooked AS MATERIALIZED (
    -- the tenants that have someone to tell: an active endpoint wanting message.created, or
    -- every tenant when $3 (the global WEBHOOK_URL is set); read in this transaction, so an
    -- endpoint committed before the batch gets its messages
    SELECT t.tenant_id FROM (SELECT DISTINCT tenant_id FROM fresh) t
    WHERE $3 OR EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant_id = t.tenant_id AND w.active
                        AND w.events ? 'message.created')
),
outbox AS (
    -- no payload: a message.created job's payload is made from the message when it is delivered
    INSERT INTO webhook_outbox (tenant_id, message_id, event)
    SELECT f.tenant_id, f.id, 'message.created' FROM fresh f JOIN hooked h ON h.tenant_id = f.tenant_id
    RETURNING id, message_id
)
SELECT o, id::text, seq, nullif(created_at, $2) FROM fresh
UNION ALL SELECT o, id::text, NULL, NULL FROM repeated
UNION ALL SELECT -1, message_id::text, id, NULL FROM outbox
"""
# The writer's own connection has no client-side timeout (aiopg's wraps each statement's wait in
# asyncio.wait_for: one more pass of the loop's backlog per batch); PostgreSQL ends a statement
# that runs over 10 s instead, as aiopg would have.
PREPARE_SETTINGS = "SET enable_seqscan = off; SET statement_timeout = '10s'"
PREPARE = "PREPARE amoiq_store_batch (json, timestamptz, boolean) AS " + STORE_BATCH
EXECUTE = "EXECUTE amoiq_store_batch (%s, %s, %s)"


async def prepare_batch(cursor: aiopg.Cursor) -> None:
    """Set up a writer's own connection (PREPARE_SETTINGS) and prepare STORE_BATCH on it."""
    await cursor.execute(PREPARE_SETTINGS)
    await cursor.execute(PREPARE)


async def prepare_batch_again(cursor: aiopg.Cursor) -> None:
    """Prepare STORE_BATCH anew on a writer's connection (plans made with today's statistics)."""
    await cursor.execute("DEALLOCATE amoiq_store_batch; " + PREPARE)


async def store_batch(cursor: aiopg.Cursor, batch: str, now: dt.datetime, hook_all: bool) -> list[tuple]:
    """Run STORE_BATCH on a prepared cursor: `batch` the drafts as a JSON array, `now` the batch's time,
    `hook_all` whether every message gets a webhook job (else those of tenants with an endpoint for it)."""
    await cursor.execute(EXECUTE, (batch, now, hook_all))
    return await cursor.fetchall()
