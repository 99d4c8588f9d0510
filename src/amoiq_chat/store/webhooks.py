"""SQL of webhook endpoints, the outbox's jobs and their deliveries (one row per job and endpoint)."""
from __future__ import annotations

from typing import Any

import aiopg

from .. import db
from ..jsonutil import dumps_str

ENDPOINT_COLUMNS = ("id, tenant_id, url, events, active, description, created_at, updated_at, previous_secret_until,"
                    " failing_since, disabled_at, disabled_reason")
DELIVERY_COLUMNS = ("id, outbox_id, webhook_id, status, attempts, next_attempt_at, last_status, last_error,"
                    " last_duration_ms, last_attempt_at, created_at, finished_at")
D_COLUMNS = ", ".join("d." + c.strip() for c in DELIVERY_COLUMNS.split(","))
# What an attempt needs, from a CTE `d` of delivery rows: the job (its payload, or its message's
# columns for a message.created job) and the endpoint (NULL columns for the global WEBHOOK_URL).
JOBS = """
SELECT d.id, d.outbox_id, d.webhook_id, d.tenant_id, d.attempts, o.event, o.payload,
       m.id AS message_id, m.session_id, m.user_id, m.message, m.sender_type, m.created_at,
       w.url, w.secret, w.previous_secret, w.previous_secret_until > now() AS overlapping, w.active, w.failing_since
FROM d JOIN webhook_outbox o ON o.id = d.outbox_id
LEFT JOIN messages m ON m.id = o.message_id
LEFT JOIN webhooks w ON w.id = d.webhook_id
"""


# Endpoints ---------------------------------------------------------------------------------

async def insert_endpoint(conn: aiopg.Connection, tenant_id: str, fields: dict[str, Any], secret: str) -> dict:
    """Store a new endpoint with its signing secret."""
    return await db.fetch_one(
        conn,
        "INSERT INTO webhooks (tenant_id, url, events, active, description, secret) VALUES (%s, %s, %s, %s, %s, %s)"
        f" RETURNING {ENDPOINT_COLUMNS}",
        (tenant_id, fields["url"], db.jsonb(fields["events"]), fields["active"], fields["description"], secret))


async def count_endpoints(conn: aiopg.Connection, tenant_id: str) -> int:
    """How many endpoints the tenant has."""
    row = await db.fetch_one(conn, "SELECT count(*) AS n FROM webhooks WHERE tenant_id = %s", (tenant_id,))
    return row["n"]


async def list_endpoints(conn: aiopg.Connection, tenant_id: str) -> list[dict]:
    """The tenant's endpoints, oldest first."""
    return await db.fetch_all(conn, f"SELECT {ENDPOINT_COLUMNS} FROM webhooks WHERE tenant_id = %s ORDER BY id",
                              (tenant_id,))


async def endpoint(conn: aiopg.Connection, tenant_id: str, webhook_id: int) -> dict | None:
    """One endpoint of the tenant."""
    return await db.fetch_one(conn, f"SELECT {ENDPOINT_COLUMNS} FROM webhooks WHERE id = %s AND tenant_id = %s",
                              (webhook_id, tenant_id))


async def update_endpoint(conn: aiopg.Connection, tenant_id: str, webhook_id: int, changes: dict[str, Any]) -> dict | None:
    """Change url/events/active/description; turning an endpoint on again clears why it was turned off."""
    sets = [f"{column} = %s" for column in changes] + ["updated_at = now()"]
    values = [db.jsonb(v) if column == "events" else v for column, v in changes.items()]
    if changes.get("active") is True:
        sets += ["failing_since = NULL", "disabled_at = NULL", "disabled_reason = NULL"]
    return await db.fetch_one(
        conn, f"UPDATE webhooks SET {', '.join(sets)} WHERE id = %s AND tenant_id = %s RETURNING {ENDPOINT_COLUMNS}",
        (*values, webhook_id, tenant_id))


async def delete_endpoint(conn: aiopg.Connection, tenant_id: str, webhook_id: int) -> bool:
    """Delete an endpoint (its deliveries go with it)."""
    return await db.execute(conn, "DELETE FROM webhooks WHERE id = %s AND tenant_id = %s", (webhook_id, tenant_id)) > 0


async def rotate_secret(conn: aiopg.Connection, tenant_id: str, webhook_id: int, secret: str, overlap: int) -> dict | None:
    """Give the endpoint a new secret; the old one keeps signing beside it for `overlap` seconds."""
    return await db.fetch_one(
        conn,
        "UPDATE webhooks SET previous_secret = secret, previous_secret_until = now() + %s * interval '1 second',"
        f" secret = %s, updated_at = now() WHERE id = %s AND tenant_id = %s RETURNING {ENDPOINT_COLUMNS}",
        (overlap, secret, webhook_id, tenant_id))


# Jobs and deliveries -----------------------------------------------------------------------

async def insert_event(conn: aiopg.Connection, tenant_id: str, event: str, payload: dict) -> int:
    """An outbox row for an event that is not a message (its whole payload kept); its id."""
    row = await db.fetch_one(conn, "INSERT INTO webhook_outbox (tenant_id, event, payload) VALUES (%s, %s, %s)"
                                   " RETURNING id", (tenant_id, event, db.jsonb(payload)))
    return row["id"]


async def fan_out(conn: aiopg.Connection, outbox_ids: list[int], with_global: bool, lease: float) -> list[dict]:
    """Make the deliveries of pending jobs (one per active endpoint of the tenant that wants the event,
    and one for the global URL), held for `lease` seconds by the caller; a job without any is
    delivered. Jobs another worker has taken (or is taking) are skipped. Returns the new deliveries."""
    return await db.fetch_all(conn, """
        WITH jobs AS (
            SELECT id, tenant_id, event FROM webhook_outbox
            WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending' FOR UPDATE SKIP LOCKED
        ),
        targets AS (
            SELECT j.id AS outbox_id, w.id AS webhook_id, j.tenant_id FROM jobs j
            JOIN webhooks w ON w.tenant_id = j.tenant_id AND w.active AND w.events ? j.event
            UNION ALL SELECT j.id, NULL, j.tenant_id FROM jobs j WHERE %(global)s AND j.event <> 'ping'
        ),
        marked AS (
            UPDATE webhook_outbox o SET status = CASE WHEN t.outbox_id IS NULL THEN 'delivered' ELSE 'sending' END,
                                        finished_at = CASE WHEN t.outbox_id IS NULL THEN now() END
            FROM jobs j LEFT JOIN (SELECT DISTINCT outbox_id FROM targets) t ON t.outbox_id = j.id
            WHERE o.id = j.id
        ),
        d AS (
            INSERT INTO webhook_deliveries (outbox_id, webhook_id, tenant_id, locked_until)
            SELECT outbox_id, webhook_id, tenant_id, now() + %(lease)s * interval '1 second' FROM targets
            ON CONFLICT DO NOTHING RETURNING *
        )""" + JOBS, {"ids": outbox_ids, "global": with_global, "lease": lease})


async def take_due(conn: aiopg.Connection, limit: int, lease: float) -> list[dict]:
    """Hold up to `limit` deliveries whose next attempt is due and that nobody holds, for `lease` seconds."""
    return await db.fetch_all(conn, """
        WITH d AS (
            UPDATE webhook_deliveries SET locked_until = now() + %(lease)s * interval '1 second'
            WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()
                         AND (locked_until IS NULL OR locked_until < now())
                         ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
            RETURNING *
        )""" + JOBS, {"limit": limit, "lease": lease})


async def add_ping(conn: aiopg.Connection, tenant_id: str, webhook_id: int, payload: dict, lease: float) -> dict | None:
    """A test ping for one endpoint: its outbox row and its one delivery, held by the caller."""
    rows = await db.fetch_all(conn, """
        WITH job AS (
            INSERT INTO webhook_outbox (tenant_id, event, payload, status)
            SELECT tenant_id, 'ping', %(payload)s, 'sending' FROM webhooks WHERE id = %(webhook)s AND tenant_id = %(tenant)s
            RETURNING id, payload
        ),
        d AS (
            INSERT INTO webhook_deliveries (outbox_id, webhook_id, tenant_id, locked_until)
            SELECT job.id, %(webhook)s, %(tenant)s, now() + %(lease)s * interval '1 second' FROM job RETURNING *
        )
        SELECT d.id, d.outbox_id, d.webhook_id, d.tenant_id, d.attempts, 'ping' AS event, job.payload,
               NULL AS message_id, w.url, w.secret, w.previous_secret, w.previous_secret_until > now() AS overlapping,
               w.active, w.failing_since
        FROM d JOIN job ON job.id = d.outbox_id JOIN webhooks w ON w.id = d.webhook_id""",
        {"tenant": tenant_id, "webhook": webhook_id, "payload": db.jsonb(payload), "lease": lease})
    return rows[0] if rows else None


async def record_attempts(conn: aiopg.Connection, outcomes: list[dict[str, Any]]) -> None:
    """Record attempts' outcomes in one statement. Each outcome: `id` (the delivery), `webhook_id`,
    `status` (pending, with its next attempt in `delay` s; delivered; dead), `code`, `error`, `ms`,
    `ok`, `disable` (the reason to turn the endpoint off now, or None). Also settles the jobs none of
    whose deliveries is pending any more, and keeps each endpoint's failing streak (by its last outcome)."""
    await db.execute(conn, """
        WITH input AS (
            SELECT * FROM json_to_recordset(%s) AS i(o int, id bigint, webhook_id bigint, status text, code int,
                                                     error text, ms int, delay float8, ok bool, disable text)
        ),
        d AS (
            UPDATE webhook_deliveries x SET status = i.status, attempts = x.attempts + 1, locked_until = NULL,
                last_status = i.code, last_error = i.error, last_duration_ms = i.ms, last_attempt_at = now(),
                next_attempt_at = now() + i.delay * interval '1 second',
                finished_at = CASE WHEN i.status = 'pending' THEN NULL ELSE now() END
            FROM input i WHERE x.id = i.id RETURNING x.id, x.outbox_id, x.status
        ),
        settled AS (
            SELECT outbox_id, bool_or(status = 'dead') AS dead FROM d GROUP BY outbox_id HAVING bool_and(status <> 'pending')
        ),
        jobs AS (
            UPDATE webhook_outbox o SET finished_at = now(),
                status = CASE WHEN s.dead OR EXISTS (SELECT 1 FROM webhook_deliveries x WHERE x.outbox_id = o.id
                    AND x.status = 'dead' AND x.id NOT IN (SELECT id FROM input)) THEN 'dead' ELSE 'delivered' END
            FROM settled s WHERE o.id = s.outbox_id AND NOT EXISTS (SELECT 1 FROM webhook_deliveries x
                WHERE x.outbox_id = o.id AND x.status = 'pending' AND x.id NOT IN (SELECT id FROM input))
        ),
        streaks AS (
            SELECT webhook_id, (array_agg(ok ORDER BY o DESC))[1] AS ok, max(disable) AS disable
            FROM input WHERE webhook_id IS NOT NULL GROUP BY webhook_id
        )
        UPDATE webhooks w SET failing_since = CASE WHEN e.ok THEN NULL ELSE coalesce(w.failing_since, now()) END,
            active = w.active AND e.disable IS NULL,
            disabled_at = CASE WHEN e.disable IS NULL THEN w.disabled_at ELSE now() END,
            disabled_reason = coalesce(e.disable, w.disabled_reason)
        FROM streaks e WHERE w.id = e.webhook_id AND (e.disable IS NOT NULL OR e.ok = (w.failing_since IS NOT NULL))""",
        (dumps_str(outcomes),))


async def put_back(conn: aiopg.Connection, delivery_id: int, delay: float) -> None:
    """Let go of a delivery without attempting it (its endpoint is busy here); due again in `delay` s."""
    await db.execute(conn, "UPDATE webhook_deliveries SET locked_until = NULL,"
                           " next_attempt_at = now() + %s * interval '1 second' WHERE id = %s", (delay, delivery_id))


async def list_deliveries(conn: aiopg.Connection, tenant_id: str, webhook_id: int, limit: int) -> list[dict]:
    """The endpoint's most recent deliveries, newest first, with their job's event."""
    return await db.fetch_all(
        conn,
        f"SELECT {D_COLUMNS}, o.event FROM webhook_deliveries d"
        " JOIN webhook_outbox o ON o.id = d.outbox_id WHERE d.webhook_id = %s AND d.tenant_id = %s"
        " ORDER BY d.id DESC LIMIT %s", (webhook_id, tenant_id, limit))


async def retry_delivery(conn: aiopg.Connection, tenant_id: str, webhook_id: int, delivery_id: int) -> dict | None:
    """Make a delivery due now with a fresh schedule (a dead one too); its job is in progress again."""
    return await db.fetch_one(conn, f"""
        WITH d AS (
            UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL
            WHERE id = %s AND webhook_id = %s AND tenant_id = %s AND (locked_until IS NULL OR locked_until < now())
            RETURNING *
        ),
        job AS (UPDATE webhook_outbox o SET status = 'sending', finished_at = NULL FROM d WHERE o.id = d.outbox_id)
        SELECT {D_COLUMNS}, o.event FROM d JOIN webhook_outbox o ON o.id = d.outbox_id""",
        (delivery_id, webhook_id, tenant_id))


async def stale_jobs(conn: aiopg.Connection, older_than: float, limit: int) -> list[dict]:
    """Pending jobs not (re-)added to the stream for `older_than` seconds, marked as re-added now
    (each by one process: rows another reconciler is marking are skipped)."""
    return await db.fetch_all(conn, """
        UPDATE webhook_outbox SET enqueued_at = now()
        WHERE id IN (SELECT id FROM webhook_outbox WHERE status = 'pending'
                     AND coalesce(enqueued_at, created_at) < now() - %s * interval '1 second'
                     ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)
        RETURNING id, message_id::text, tenant_id""", (older_than, limit))
