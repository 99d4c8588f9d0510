"""Sessions (conversations), the widgets they belong to, visitor identity, and accepting a chat."""
from __future__ import annotations

import re
from typing import Any

import aiopg
import psycopg2.errors

from .. import db
from ..credentials import random_id, user_hash_valid
from ..errors import Conflict, Forbidden, SessionNotFound, Unauthorized, ValidationError
from ..jsonutil import iso
from ..store.widgets import widget_by_site_key
from .widgets import PublicWidgets, widget_not_found

SESSION_ID = re.compile(r"^[A-Za-z0-9._~-]{8,128}$")
SESSION_COLUMNS = ("session_id, tenant_id, site_key, user_id, fingerprint, visitor_name, visitor_email, visitor_info,"
                   " status, assigned_agent_id, ai_mode, last_seq, started_at, last_activity_at, escalated_at, accepted_at")


def check_session_id(session_id: Any, field: str = "sessionId") -> str:
    """Refuse a session id that is not 8-128 url-safe characters."""
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        raise ValidationError(f"{field} must be 8-128 url-safe characters (letters, digits, . _ ~ -)",
                              errors={field: "must be 8-128 url-safe characters"})
    return session_id


def new_session_id() -> str:
    """A fresh session id."""
    return random_id("session", 12)


async def find_widget(conn: aiopg.Connection, site_key: str, tenant_id: str | None = None,
                      kept: PublicWidgets | None = None) -> dict:
    """An active widget by site key (404 WIDGET_NOT_FOUND), checked against the caller's tenant (403).

    With `kept` (the process's PublicWidgets), a row read less than PUBLIC_TTL ago will do: a widget
    changed through another process may then be seen as it was, for that long.
    """
    widget = await kept.lookup(conn, site_key) if kept is not None else await widget_by_site_key(conn, site_key)
    if widget is None or not widget["is_active"]:
        raise widget_not_found(site_key)
    if tenant_id is not None and widget["tenant_id"] != tenant_id:
        raise Forbidden("This widget belongs to another tenant")
    return widget


async def verify_identity(conn: aiopg.Connection, tenant_id: str, user_id: str | None, given_hash: str | None) -> bool:
    """Check userHash when the tenant turned identity verification on; return whether userId is vouched for."""
    if not user_id:
        return False
    tenant = await db.fetch_one(conn, "SELECT identity_verification, identity_secret FROM tenants WHERE id = %s", (tenant_id,))
    if tenant is None:
        raise Forbidden("Unknown tenant")
    if not tenant["identity_verification"]:
        return True
    if not user_hash_valid(tenant["identity_secret"], user_id, given_hash):
        raise Unauthorized("userHash is missing or invalid for this userId", errors={"userHash": "missing or invalid"})
    return True


async def ensure_session(conn: aiopg.Connection, tenant_id: str, session_id: str, *, site_key: str | None = None,
                         fingerprint: str | None = None, user_id: str | None = None,
                         user_info: dict | None = None) -> dict:
    """Create the session for the tenant, or resume it (403 when another tenant or user holds it,
    404 when its widget is gone)."""
    user_info = user_info or {}
    try:
        row = await db.fetch_one(
            conn,
            "INSERT INTO sessions (session_id, tenant_id, site_key, fingerprint, user_id, visitor_name, visitor_email, visitor_info)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (session_id) DO UPDATE SET last_activity_at = now(),"
            "  site_key = COALESCE(sessions.site_key, EXCLUDED.site_key),"
            "  fingerprint = COALESCE(EXCLUDED.fingerprint, sessions.fingerprint),"
            "  user_id = COALESCE(sessions.user_id, EXCLUDED.user_id),"
            "  visitor_name = COALESCE(EXCLUDED.visitor_name, sessions.visitor_name),"
            "  visitor_email = COALESCE(EXCLUDED.visitor_email, sessions.visitor_email),"
            "  visitor_info = sessions.visitor_info || EXCLUDED.visitor_info"
            " WHERE sessions.tenant_id = EXCLUDED.tenant_id"
            "  AND (EXCLUDED.user_id IS NULL OR sessions.user_id IS NULL OR sessions.user_id = EXCLUDED.user_id)"
            f" RETURNING {SESSION_COLUMNS}",
            (session_id, tenant_id, site_key, fingerprint, user_id, user_info.get("name"), user_info.get("email"),
             db.jsonb(user_info)),
        )
    except psycopg2.errors.ForeignKeyViolation:
        if site_key is None:
            raise
        # its widget was deleted since the caller found it (with its tenant, if that went too)
        raise widget_not_found(site_key) from None
    if row is None:  # refused, and nothing written: say whose it is
        holder = await db.fetch_one(conn, "SELECT tenant_id FROM sessions WHERE session_id = %s", (session_id,))
        if holder is None or holder["tenant_id"] != tenant_id:
            raise Forbidden("This session belongs to another tenant")
        raise Forbidden("This session belongs to another user", errors={"userId": "does not match the session"})
    return row


async def find_session(conn: aiopg.Connection, session_id: str, tenant_id: str) -> dict:
    """A session of the tenant: 404 SESSION_NOT_FOUND when absent, 403 when another tenant's."""
    row = await db.fetch_one(conn, f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = %s", (session_id,))
    if row is None:
        raise SessionNotFound(f"Session {session_id} not found")
    if row["tenant_id"] != tenant_id:
        raise Forbidden("This session belongs to another tenant")
    return row


async def last_seq(conn: aiopg.Connection, session_id: str) -> int:
    """The seq of the newest committed message of a session (0 when none)."""
    row = await db.fetch_one(conn, "SELECT last_seq FROM sessions WHERE session_id = %s", (session_id,))
    return row["last_seq"] if row else 0


async def accept(conn: aiopg.Connection, tenant_id: str, session_id: str, agent_id: int) -> dict:
    """Assign a non-closed session nobody else holds to the agent, atomically (first wins).

    Returns the session row plus `was_waiting`; raises 404/403/409.
    """
    row = await db.fetch_one(
        conn,
        "UPDATE sessions s SET assigned_agent_id = %s, status = 'active', ai_mode = false,"
        " accepted_at = now(), last_activity_at = now()"
        " FROM (SELECT session_id, status FROM sessions WHERE session_id = %s FOR UPDATE) old"
        " WHERE s.session_id = old.session_id AND s.tenant_id = %s AND s.status <> 'closed'"
        " AND (s.assigned_agent_id IS NULL OR s.assigned_agent_id = %s)"
        f" RETURNING {', '.join('s.' + c.strip() for c in SESSION_COLUMNS.split(','))}, old.status = 'waiting' AS was_waiting",
        (agent_id, session_id, tenant_id, agent_id),
    )
    if row is not None:
        return row
    current = await find_session(conn, session_id, tenant_id)
    if current["status"] == "closed":
        raise Conflict("This chat is closed")
    raise Conflict("This chat was already accepted by another agent")


async def waiting_sessions(conn: aiopg.Connection, tenant_id: str) -> list[dict]:
    """The tenant's queue, oldest escalation first, in the 004 shape."""
    rows = await db.fetch_all(
        conn,
        "SELECT s.session_id, s.site_key, s.visitor_name, s.escalated_at, s.started_at, w.business_name,"
        " EXTRACT(EPOCH FROM now() - COALESCE(s.escalated_at, s.started_at)) AS waited"
        " FROM sessions s LEFT JOIN widget_configs w ON w.site_key = s.site_key"
        " WHERE s.tenant_id = %s AND s.status = 'waiting' ORDER BY s.escalated_at NULLS LAST, s.id",
        (tenant_id,),
    )
    return [{
        "sessionId": r["session_id"], "siteKey": r["site_key"], "businessName": r["business_name"],
        "visitorName": r["visitor_name"] or "Customer", "waitingTime": int(float(r["waited"] or 0) // 60),
        "escalated": r["escalated_at"] is not None, "addedAt": iso(r["escalated_at"] or r["started_at"]),
    } for r in rows]


async def assigned_sessions(conn: aiopg.Connection, agent_id: int) -> list[str]:
    """Ids of the active sessions an agent holds."""
    rows = await db.fetch_all(conn, "SELECT session_id FROM sessions WHERE assigned_agent_id = %s AND status = 'active'",
                              (agent_id,))
    return [r["session_id"] for r in rows]


async def customer_info(conn: aiopg.Connection, session: dict) -> dict[str, Any]:
    """The `customerInfo` of the agent's history view."""
    business = None
    if session["site_key"]:
        widget = await db.fetch_one(conn, "SELECT business_name FROM widget_configs WHERE site_key = %s", (session["site_key"],))
        business = widget["business_name"] if widget else None
    info = session["visitor_info"] or {}
    waited_from = session["escalated_at"]
    waiting = None
    if waited_from is not None and session["status"] == "waiting":
        minutes = int((await db.fetch_one(conn, "SELECT EXTRACT(EPOCH FROM now() - %s) AS s", (waited_from,)))["s"] // 60)
        waiting = f"{minutes} minutes"
    return {"name": session["visitor_name"] or info.get("name"), "email": session["visitor_email"] or info.get("email"),
            "business": business, "waitingTime": waiting, "userId": session["user_id"], "status": session["status"]}


async def staff_member(conn: aiopg.Connection, role: str, subject: str, tenant_id: str) -> dict:
    """The active agent (or the admin) a token names, with a display name; 403 otherwise."""
    member_id = db.as_id(subject)
    if member_id is None:
        raise Forbidden("Unknown staff member")
    if role == "agent":
        row = await db.fetch_one(
            conn, "SELECT id, tenant_id, full_name AS name FROM agents WHERE id = %s AND is_active", (member_id,))
    else:
        row = await db.fetch_one(conn, "SELECT id, tenant_id, username AS name FROM users WHERE id = %s", (member_id,))
    if row is None or row["tenant_id"] != tenant_id:
        raise Forbidden("This account is not active in this tenant")
    return row
