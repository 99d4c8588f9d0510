"""The widget backend's HTTP routes (001/003) and the agent's history view (004)."""
from __future__ import annotations

from aiohttp import web

from .. import credentials
from ..responses import widgets as out
from ..apidoc import describe
from ..auth import authenticate
from ..credentials import ADMIN, AGENT, PUBLISHABLE_KEY, SECRET_KEY, VISITOR, Principal
from ..errors import Forbidden, MissingSessionId, MissingTenantId
from ..http import json_response, read_json, validate
from ..appkeys import CHAT_HOOKS, DB, PRESENCE, PUBLIC_WIDGETS, REDIS, SETTINGS, WRITER
from ..services import chat, messages, sessions, visitors
from ..visitor_schemas import AnonymousTokenBody, HistoryQuery, MessageBody, SessionBody, TenantQuery, message_text

routes = web.RouteTableDef()
STAFF_CREDENTIALS = (ADMIN, AGENT, SECRET_KEY)


def tenant_of(principal: Principal, tenant_id: str | None) -> str:
    """The request's tenantId, which must be given and be the credential's."""
    if not tenant_id:
        raise MissingTenantId()
    principal.check_tenant(tenant_id)
    return tenant_id


async def _enter(request: web.Request, principal: Principal, body: dict, tenant_id: str, session_id: str, *,
                 refresh: bool = True) -> visitors.Visit:
    """The visitor's session for a request body (services.visitors.enter)."""
    claim = visitors.Claim(
        tenant_id, session_id, site_key=body.get("siteKey") or body.get("siteId"), origin=request.headers.get("Origin"),
        user_id=body.get("userId"), user_hash=body.get("userHash"), fingerprint=body.get("fingerprint"),
        user_info=body.get("userInfo"), secret=body.get("sessionSecret"),
        token=principal if principal.role == VISITOR else None, trusted=principal.role == SECRET_KEY)
    return await visitors.enter(request.app[DB], request.app[REDIS], request.app[PUBLIC_WIDGETS], claim, refresh=refresh)


def _secret(visit: visitors.Visit) -> dict:
    """`sessionSecret` for whoever just created the session (shown this once), else nothing."""
    return {"sessionSecret": visit.secret} if visit.secret else {}


@routes.post("/api/chat/anonymous-token", name="chat_anonymous_token")
@describe("chat", auth=(PUBLISHABLE_KEY, SECRET_KEY), body=AnonymousTokenBody, body_required=False,
          answers={200: out.VisitorTokenAnswer}, errors=(404,))
async def anonymous_token(request: web.Request) -> web.Response:
    """Issue a visitor JWT bound to a session (created when new, else with proof); `uid` only for a verified userId.

    A still-valid visitor token renews itself here (for its own session only).
    """
    principal = await authenticate(request, allow=(PUBLISHABLE_KEY, SECRET_KEY, VISITOR))
    body = validate(AnonymousTokenBody, await read_json(request, required=False))
    tenant_id = tenant_of(principal, body.get("tenantId"))
    session_id = body.get("sessionId") or principal.session_id or sessions.new_session_id()
    visit = await _enter(request, principal, body, tenant_id, session_id)
    settings = request.app[SETTINGS]
    token = credentials.issue_token(settings, subject=session_id, role=VISITOR, tenant_id=tenant_id, sid=session_id,
                                    uid=visit.user_id)
    return json_response({"token": token, "expiresIn": settings.visitor_token_ttl, "sessionId": session_id,
                          **_secret(visit)})


@routes.post("/api/chat/session", name="chat_session")
@describe("chat", auth=(PUBLISHABLE_KEY, SECRET_KEY), body=SessionBody, answers={200: out.SessionAnswer}, errors=(404,))
async def open_session(request: web.Request) -> web.Response:
    """Create or resume a visitor's session for a widget."""
    principal = await authenticate(request, allow=(PUBLISHABLE_KEY, SECRET_KEY))
    body = validate(SessionBody, await read_json(request))
    tenant_id = tenant_of(principal, body.get("tenantId"))
    session_id = body.get("sessionId") or sessions.new_session_id()
    visit = await _enter(request, principal, body, tenant_id, session_id)
    session = visit.session
    return json_response({"success": True, "sessionId": session_id, "tenantId": tenant_id,
                          "siteKey": session["site_key"], "status": session["status"], "aiMode": session["ai_mode"],
                          **_secret(visit)})


@routes.post("/webchat/message", name="webchat_message")
@routes.post("/api/chat/messages", name="chat_post_message")
@describe("chat", auth=(PUBLISHABLE_KEY, VISITOR), body=MessageBody, answers={200: out.MessageStoredAnswer}, errors=(404,))
async def post_message(request: web.Request) -> web.Response:
    """Store a visitor's message sent over HTTP; everyone in the conversation gets it live."""
    principal = await authenticate(request, allow=(PUBLISHABLE_KEY, VISITOR))
    body = validate(MessageBody, await read_json(request))
    tenant_id = tenant_of(principal, body.get("tenantId") or (principal.tenant_id if principal.role == VISITOR else None))
    session_id = body.get("sessionId") or principal.session_id
    if not session_id:
        raise MissingSessionId()
    if principal.role == VISITOR and session_id != principal.session_id:
        raise Forbidden("This token belongs to another session", errors={"sessionId": "not this token's session"})
    visit = await _enter(request, principal, body, tenant_id, session_id, refresh=False)
    session = visit.session
    text = message_text(body)
    stored = await chat.post_visitor_message(request.app[WRITER], session, text,
                                             client_message_id=body.get("clientMessageId"),
                                             metadata=chat.visitor_metadata(body))
    await chat.after_visitor_message(request.app[CHAT_HOOKS], session, stored)
    return json_response({"success": True, "messageId": stored.id, "sessionId": session_id, "seq": stored.seq,
                          "clientMessageId": body.get("clientMessageId"), "duplicate": stored.duplicate,
                          **_secret(visit)})


@routes.get("/api/chat/messages", name="chat_messages")
@describe("chat", auth=(VISITOR, *STAFF_CREDENTIALS), query=HistoryQuery, answers={200: out.HistoryAnswer},
          errors=(404,))
async def list_messages(request: web.Request) -> web.Response:
    """History, oldest first: a session's (sessionId) or a logged-in user's across sessions (userId)."""
    principal = await authenticate(request, allow=(VISITOR, *STAFF_CREDENTIALS))
    query = validate(HistoryQuery, dict(request.query))
    tenant_id = tenant_of(principal, query.get("tenantId"))
    session_id, user_id = query.get("sessionId"), query.get("userId")
    if not session_id and not user_id:
        raise MissingSessionId()
    if principal.role == VISITOR:
        if user_id and user_id != principal.user_id:
            raise Forbidden("This token may not read that user's history", errors={"userId": "not this token's user"})
        if session_id and session_id != principal.session_id:
            raise Forbidden("This token belongs to another session", errors={"sessionId": "not this token's session"})
    before = str(query["before"]) if query.get("before") else None
    rows, more = await chat.history_page(request.app[DB], tenant_id, session_id=session_id, user_id=user_id,
                                         before=before, limit=query["limit"])
    items = [messages.to_001(row) for row in rows]
    return json_response({"messages": items, "hasMore": more, "nextBefore": items[0]["id"] if more and items else None})


@routes.get("/api/chat/online-users", name="chat_online_users")
@describe("chat", auth=STAFF_CREDENTIALS, query=TenantQuery, answers={200: out.OnlineUsersAnswer},
          headers={"X-Tenant-ID": "the tenant, instead of ?tenantId"})
async def online_users(request: web.Request) -> web.Response:
    """The tenant's visitors with an open socket (from Redis)."""
    principal = await authenticate(request, allow=STAFF_CREDENTIALS)
    header = request.headers.get("X-Tenant-ID")
    if header:
        principal.check_tenant(header)
    tenant_id = tenant_of(principal, validate(TenantQuery, dict(request.query)).get("tenantId") or header)
    return json_response({"users": await request.app[PRESENCE].online(tenant_id)})


@routes.get("/api/widgets/sessions/{sessionId}/messages", name="widget_session_messages")
@describe("chat", auth=STAFF_CREDENTIALS, answers={200: out.SessionHistoryAnswer}, errors=(400,))
async def session_messages(request: web.Request) -> web.Response:
    """A conversation's full history for the agent interface (004 shape)."""
    principal = await authenticate(request, allow=STAFF_CREDENTIALS)
    session_id = sessions.check_session_id(request.match_info["sessionId"])
    rows, info = await chat.transcript(request.app[DB], principal.tenant_id, session_id)
    return json_response({"success": True, "sessionId": session_id,
                          "messages": [messages.to_004(row) for row in rows], "customerInfo": info})
