"""SQL for sessions (conversations): create or resume, read, assign, the queue."""
from __future__ import annotations

import datetime as dt

import aiopg

from .. import db

SESSION_COLUMNS = ("session_id, tenant_id, site_key, user_id, fingerprint, visitor_name, visitor_email, visitor_info,"
                   " status, assigned_agent_id, ai_mode, last_seq, started_at, last_activity_at, escalated_at, accepted_at,"
                   " user_verified")


async def upsert_session(conn: aiopg.Connection, tenant_id: str, session_id: str, *, site_key: str | None,
                         fingerprint: str | None, user_id: str | None, user_verified: bool, user_info: dict,
                         secret_hash: str, proof_hash: str | None, proven: bool) -> dict | None:
    """Create the session (keeping `secret_hash`), or resume it when it is the tenant's, no other
    user's, and the caller may: `proven` (a visitor token for it, a secret key), `proof_hash` the hash
    of its secret, or the tenant resumes sessions by id. None when refused (nothing written); the row's
    `created` says which. Raises ForeignKeyViolation when its widget (or tenant) is gone."""
    return await db.fetch_one(
        conn,
        "INSERT INTO sessions (session_id, tenant_id, site_key, fingerprint, user_id, user_verified, visitor_name,"
        " visitor_email, visitor_info, secret_hash)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (session_id) DO UPDATE SET last_activity_at = now(),"
        "  site_key = COALESCE(sessions.site_key, EXCLUDED.site_key),"
        "  fingerprint = COALESCE(EXCLUDED.fingerprint, sessions.fingerprint),"
        "  user_id = COALESCE(sessions.user_id, EXCLUDED.user_id),"
        "  user_verified = CASE WHEN sessions.user_id IS NULL THEN EXCLUDED.user_verified"
        "   ELSE sessions.user_verified OR (EXCLUDED.user_verified AND EXCLUDED.user_id = sessions.user_id) END,"
        "  visitor_name = COALESCE(EXCLUDED.visitor_name, sessions.visitor_name),"
        "  visitor_email = COALESCE(EXCLUDED.visitor_email, sessions.visitor_email),"
        "  visitor_info = sessions.visitor_info || EXCLUDED.visitor_info"
        " WHERE sessions.tenant_id = EXCLUDED.tenant_id"
        "  AND (EXCLUDED.user_id IS NULL OR sessions.user_id IS NULL OR sessions.user_id = EXCLUDED.user_id)"
        "  AND (%s OR sessions.secret_hash = %s"
        "   OR EXISTS (SELECT 1 FROM tenants t WHERE t.id = sessions.tenant_id AND t.session_resume = 'session_id'))"
        f" RETURNING {SESSION_COLUMNS}, xmax = 0 AS created",
        (session_id, tenant_id, site_key, fingerprint, user_id, user_verified, user_info.get("name"),
         user_info.get("email"), db.jsonb(user_info), secret_hash, proven, proof_hash),
    )


async def session_owner(conn: aiopg.Connection, session_id: str) -> dict | None:
    """Who may resume a session: its tenant_id, user_id, secret_hash and its tenant's session_resume."""
    return await db.fetch_one(
        conn,
        "SELECT s.tenant_id, s.user_id, s.secret_hash, t.session_resume FROM sessions s"
        " JOIN tenants t ON t.id = s.tenant_id WHERE s.session_id = %s",
        (session_id,),
    )


async def session_by_id(conn: aiopg.Connection, session_id: str) -> dict | None:
    """A session of any tenant (callers compare its tenant_id with the credential's)."""
    return await db.fetch_one(conn, f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = %s", (session_id,))


async def last_seq(conn: aiopg.Connection, session_id: str) -> int:
    """The seq of the newest committed message of a session (0 when none)."""
    row = await db.fetch_one(conn, "SELECT last_seq FROM sessions WHERE session_id = %s", (session_id,))
    return row["last_seq"] if row else 0


async def waiting_sessions(conn: aiopg.Connection, tenant_id: str) -> list[dict]:
    """The tenant's waiting sessions, oldest escalation first, with their widget's name and seconds waited."""
    return await db.fetch_all(
        conn,
        "SELECT s.session_id, s.site_key, s.visitor_name, s.escalated_at, s.started_at, w.business_name,"
        " EXTRACT(EPOCH FROM now() - COALESCE(s.escalated_at, s.started_at)) AS waited"
        " FROM sessions s LEFT JOIN widget_configs w ON w.site_key = s.site_key"
        " WHERE s.tenant_id = %s AND s.status = 'waiting' ORDER BY s.escalated_at NULLS LAST, s.id",
        (tenant_id,),
    )


async def assigned_session_ids(conn: aiopg.Connection, agent_id: int) -> list[str]:
    """Ids of the active sessions an agent holds."""
    rows = await db.fetch_all(conn, "SELECT session_id FROM sessions WHERE assigned_agent_id = %s AND status = 'active'",
                              (agent_id,))
    return [r["session_id"] for r in rows]


async def seconds_since(conn: aiopg.Connection, moment: dt.datetime) -> float:
    """Seconds from `moment` to now, by the database's clock."""
    return (await db.fetch_one(conn, "SELECT EXTRACT(EPOCH FROM now() - %s) AS s", (moment,)))["s"]
