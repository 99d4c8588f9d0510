"""Sessions (conversations), the widgets they belong to, visitor identity, and accepting a chat."""
from __future__ import annotations

import re
from typing import Any

import aiopg
import psycopg2.errors

from .. import db
from ..credentials import hash_api_key, new_session_secret, random_id, user_hash_valid
from ..errors import Forbidden, SessionNotFound, Unauthorized, ValidationError
from ..jsonutil import iso
from ..store import accounts, sessions as store, tenants, widgets
from .widgets import PublicWidgets, widget_not_found

SESSION_ID = re.compile(r"^[A-Za-z0-9._~-]{8,128}$")


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
    widget = await kept.lookup(conn, site_key) if kept is not None else await widgets.widget_by_site_key(conn, site_key)
    if widget is None or not widget["is_active"]:
        raise widget_not_found(site_key)
    if tenant_id is not None and widget["tenant_id"] != tenant_id:
        raise Forbidden("This widget belongs to another tenant")
    return widget


async def verify_identity(conn: aiopg.Connection, tenant_id: str, user_id: str | None, given_hash: str | None) -> bool:
    """Check userHash when the tenant turned identity verification on (401 when wrong); return whether
    userId is verified (False without verification: then a userId is only claimed)."""
    if not user_id:
        return False
    tenant = await tenants.tenant_by_id(conn, tenant_id)
    if tenant is None:
        raise Forbidden("Unknown tenant")
    if not tenant["identity_verification"]:
        return False
    if not user_hash_valid(tenant["identity_secret"], user_id, given_hash):
        raise Unauthorized("userHash is missing or invalid for this userId", errors={"userHash": "missing or invalid"})
    return True


async def ensure_session(conn: aiopg.Connection, tenant_id: str, session_id: str, *, site_key: str | None = None,
                         fingerprint: str | None = None, user_id: str | None = None, user_verified: bool = False,
                         user_info: dict | None = None, secret_hash: str | None = None, secret: str | None = None,
                         proven: bool = False) -> dict:
    """Create the session for the tenant (its secret kept as `secret_hash`; without one, a random
    secret nobody knows), or resume it with proof (`check_resume`). 403 when another tenant or user
    holds it or the proof is missing, 404 when its widget is gone; the row's `created` tells a new session."""
    user_info = user_info or {}
    try:
        row = await store.upsert_session(conn, tenant_id, session_id, site_key=site_key, fingerprint=fingerprint,
                                         user_id=user_id, user_verified=user_verified, user_info=user_info,
                                         secret_hash=secret_hash or new_session_secret()[1],
                                         proof_hash=hash_api_key(secret) if secret else None, proven=proven)
    except psycopg2.errors.ForeignKeyViolation:
        if site_key is None:
            raise
        # its widget was deleted since the caller found it (with its tenant, if that went too)
        raise widget_not_found(site_key) from None
    if row is None:  # refused, and nothing written: say why
        await check_resume(conn, session_id, tenant_id, secret=secret, proven=proven)
        raise Forbidden("This session belongs to another user", errors={"userId": "does not match the session"})
    return row


async def check_resume(conn: aiopg.Connection, session_id: str, tenant_id: str, *, secret: str | None,
                       proven: bool) -> None:
    """403 unless the session is the tenant's and the caller may resume it (SPEC section 12): `proven`
    (a visitor token for it, a secret key), its `secret`, or the tenant's session_resume = session_id."""
    owner = await store.session_owner(conn, session_id)
    if owner is None or owner["tenant_id"] != tenant_id:
        raise Forbidden("This session belongs to another tenant")
    if not (proven or owner["session_resume"] == "session_id"
            or (secret and owner["secret_hash"] == hash_api_key(secret))):
        raise Forbidden("Resuming this session needs its sessionSecret (or a visitor token for it)",
                        errors={"sessionSecret": "missing or wrong"})


def of_tenant(row: dict | None, session_id: str, tenant_id: str) -> dict:
    """A session row read for the tenant: 404 SESSION_NOT_FOUND when absent, 403 when another tenant's."""
    if row is None:
        raise SessionNotFound(f"Session {session_id} not found")
    if row["tenant_id"] != tenant_id:
        raise Forbidden("This session belongs to another tenant")
    return row


async def find_session(conn: aiopg.Connection, session_id: str, tenant_id: str) -> dict:
    """A session of the tenant: 404 SESSION_NOT_FOUND when absent, 403 when another tenant's."""
    return of_tenant(await store.session_by_id(conn, session_id), session_id, tenant_id)


async def waiting_sessions(conn: aiopg.Connection, tenant_id: str) -> list[dict]:
    """The tenant's queue, oldest escalation first, in the 004 shape."""
    rows = await store.waiting_sessions(conn, tenant_id)
    return [{
        "sessionId": r["session_id"], "siteKey": r["site_key"], "businessName": r["business_name"],
        "visitorName": r["visitor_name"] or "Customer", "waitingTime": int(float(r["waited"] or 0) // 60),
        "escalated": r["escalated_at"] is not None, "addedAt": iso(r["escalated_at"] or r["started_at"]),
    } for r in rows]


async def customer_info(conn: aiopg.Connection, session: dict) -> dict[str, Any]:
    """The `customerInfo` of the agent's history view."""
    business = await widgets.business_name(conn, session["site_key"])
    info = session["visitor_info"] or {}
    waited_from = session["escalated_at"]
    waiting = None
    if waited_from is not None and session["status"] == "waiting":
        minutes = int(await store.seconds_since(conn, waited_from) // 60)
        waiting = f"{minutes} minutes"
    return {"name": session["visitor_name"] or info.get("name"), "email": session["visitor_email"] or info.get("email"),
            "business": business, "waitingTime": waiting, "userId": session["user_id"], "status": session["status"]}


async def staff_member(conn: aiopg.Connection, role: str, subject: str, tenant_id: str) -> dict:
    """The active agent (or the admin) a token names, with a display name; 403 otherwise."""
    member_id = db.as_id(subject)
    if member_id is None:
        raise Forbidden("Unknown staff member")
    row = await accounts.staff_by_id(conn, "agents" if role == "agent" else "users", member_id)
    if row is None or row["tenant_id"] != tenant_id:
        raise Forbidden("This account is not active in this tenant")
    return row
