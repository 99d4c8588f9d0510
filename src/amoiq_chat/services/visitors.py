"""A visitor's way into its session: the one function the REST routes and the socket join call.

It finds the widget, checks the page's Origin against the widget's allowed domains, verifies
the claimed identity (userHash), creates the session or resumes it with proof (SPEC section 12:
its `sessionSecret`, a visitor token for it, or the tenant's `session_resume` = session_id), or,
for a visitor token, reads it; and refreshes `session:{sessionId}`. Whoever creates a session
gets its secret, once.
"""
from __future__ import annotations

from dataclasses import dataclass

import aiopg
import redis.asyncio as aioredis

from ..bus import rooms
from ..credentials import Principal, new_session_secret
from ..errors import Forbidden
from . import sessions
from .widgets import PublicWidgets, origin_allowed


@dataclass(frozen=True, slots=True)
class Claim:
    """What a visitor's request or first frame says about its session.

    `tenant_id` is the credential's tenant (None on a tokenless socket: the widget's, then);
    `token` a visitor token of this session (proof enough to resume it); `trusted` a secret key
    (server to server: no proof needed); `secret` the sessionSecret given; `origin_required` is
    true on sockets (SPEC section 6: the Origin header must match), false over HTTP (a request
    without Origin, like curl, is served).
    """

    tenant_id: str | None
    session_id: str
    site_key: str | None = None
    origin: str | None = None
    origin_required: bool = False
    user_id: str | None = None
    user_hash: str | None = None
    fingerprint: str | None = None
    user_info: dict | None = None
    token: Principal | None = None
    trusted: bool = False
    secret: str | None = None


def check_origin(widget: dict, origin: str | None, required: bool) -> None:
    """403 (errors.origin) when the widget lists allowed domains and the Origin is not one of them
    (or, when required, missing)."""
    if origin is None and not required:
        return
    if not origin_allowed(widget["allowed_domains"], origin):
        raise Forbidden("This origin is not allowed for the widget", errors={"origin": "not allowed"})


@dataclass(frozen=True, slots=True)
class Visit:
    """The visitor's session row, the userId this claim verified (None: anonymous or only claimed),
    and the new session's secret (only when this call created the session)."""

    session: dict
    user_id: str | None = None
    secret: str | None = None


async def enter(pool: aiopg.Pool, redis: aioredis.Redis, kept: PublicWidgets | None, claim: Claim, *,
                create: bool = True, refresh: bool = True) -> Visit:
    """The visitor's session row: created or resumed (`create`), or only read (e.g. a token's session).

    Refuses (nothing written) an unknown or inactive widget (404), another tenant's widget or
    session (403), a foreign Origin (403), an existing session without proof (403 sessionSecret)
    and a userId without a valid userHash when the tenant verifies identities (401). A userId is
    verified by its userHash (tenant verification on) or by the visitor token's uid; otherwise it
    is stored as claimed (user_verified false) and gives no `uid`. With `refresh`, writes
    `session:{id}` (a message leaves that to the writer, which refreshes it with the message).
    """
    if claim.token is not None and claim.token.session_id != claim.session_id:
        raise Forbidden("This token belongs to another session", errors={"sessionId": "not this token's session"})
    async with pool.acquire() as conn:
        widget = None
        if claim.site_key:
            widget = await sessions.find_widget(conn, claim.site_key, claim.tenant_id, kept)
            check_origin(widget, claim.origin, claim.origin_required)
        tenant_id = claim.tenant_id or widget["tenant_id"]
        user_id = secret = None
        proven = claim.token is not None or claim.trusted
        if not create:
            session = await sessions.find_session(conn, claim.session_id, tenant_id)
            if not proven:
                await sessions.check_resume(conn, claim.session_id, tenant_id, secret=claim.secret, proven=False)
            if widget is None and session["site_key"]:
                check_origin(await sessions.find_widget(conn, session["site_key"], tenant_id, kept), claim.origin,
                             claim.origin_required)
        else:
            claimed = claim.user_id or None
            verified = claimed is not None and claim.token is not None and claim.token.user_id == claimed
            if not verified:
                verified = await sessions.verify_identity(conn, tenant_id, claimed, claim.user_hash)
            secret, secret_hash = new_session_secret()
            session = await sessions.ensure_session(
                conn, tenant_id, claim.session_id, site_key=widget["site_key"] if widget else None,
                fingerprint=claim.fingerprint, user_id=claimed, user_verified=verified, user_info=claim.user_info,
                secret_hash=secret_hash, secret=claim.secret, proven=proven)
            user_id = claimed if verified else None
            secret = secret if session["created"] else None
    if refresh:
        await rooms.refresh_session(redis, session)
    return Visit(session, user_id, secret)
