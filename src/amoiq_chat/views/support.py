"""The support workflow's routes (seed 004): escalate, queue position and stats, the agents' queue,
active chats; and the visitor's rating (SPEC section 12)."""
from __future__ import annotations

from aiohttp import web

from ..apidoc import describe
from ..responses import support as out
from ..appkeys import DB, PUBLIC_WIDGETS, SUPPORT
from ..auth import authenticate
from ..credentials import ADMIN, AGENT, PUBLISHABLE_KEY, SECRET_KEY, VISITOR
from ..errors import Forbidden, SessionNotFound
from ..http import json_response, read_json, validate
from ..jsonutil import iso
from ..visitor_schemas import EscalateBody, RatingBody
from ..services import sessions
from ..services.queue import DEFAULT_ACCEPT_SECONDS
from ..store import support as store

routes = web.RouteTableDef()
STAFF = (ADMIN, AGENT, SECRET_KEY)


async def _widget_session(request: web.Request) -> dict:
    """The public routes' session: its widget must be active and be the session's (else 404)."""
    site_key = request.match_info["siteKey"]
    session_id = sessions.check_session_id(request.match_info["sessionId"])
    async with request.app[DB].acquire() as conn:
        await sessions.find_widget(conn, site_key, kept=request.app[PUBLIC_WIDGETS])
        state = await store.session_state(conn, session_id)
    if state is None or state["site_key"] != site_key:
        raise SessionNotFound(f"Session {session_id} not found for widget {site_key}")
    return state


@routes.post("/api/widgets/escalate/{siteKey}/{sessionId}", name="widget_escalate")
@describe("support", body=EscalateBody, body_required=False, answers={200: out.EscalateAnswer}, errors=(409,))
async def escalate(request: web.Request) -> web.Response:
    """Public (the widget calls it): put the session in the queue; its place and estimated wait in minutes."""
    body = validate(EscalateBody, await read_json(request, required=False))
    state = await _widget_session(request)
    result = await request.app[SUPPORT].escalate(state["tenant_id"], state["session_id"], body.get("reason"))
    return json_response({"success": True, "message": "Chat escalated to human agent", "data": {
        "sessionId": state["session_id"], "queuePosition": result["position"] or 0,
        "estimatedWait": result["estimatedWait"] or 0, "status": result["status"]}})


@routes.get("/api/widgets/queue-position/{siteKey}/{sessionId}", name="widget_queue_position")
@describe("support", answers={200: out.QueuePositionAnswer})
async def queue_position(request: web.Request) -> web.Response:
    """Public: the figures the session's visitor was last pushed (0 and its status when it is not waiting)."""
    state = await _widget_session(request)
    place = None
    if state["status"] == "waiting":
        place = await request.app[SUPPORT].position(state["tenant_id"], state["session_id"])
    position, wait = place or (0, 0)
    return json_response({"success": True, "data": {"position": position, "estimatedWait": wait,
                                                    "status": state["status"]}})


@routes.get("/api/widgets/{siteKey}/queue-stats", name="widget_queue_stats")
@describe("support", auth=STAFF, answers={200: out.QueueStatsAnswer})
async def queue_stats(request: web.Request) -> web.Response:
    """The widget's waiting sessions, the tenant's online agents and its recent mean wait."""
    principal = await authenticate(request, allow=STAFF)
    support = request.app[SUPPORT]
    async with request.app[DB].acquire() as conn:
        widget = await sessions.find_widget(conn, request.match_info["siteKey"], principal.tenant_id)
        waiting = await store.widget_waiting(conn, widget["site_key"])
        snapshot = await support.snapshot(conn, principal.tenant_id)
    seconds = snapshot.accept_seconds if snapshot.accept_seconds is not None else DEFAULT_ACCEPT_SECONDS
    return json_response({"success": True, "data": {"stats": {
        "waitingSessions": waiting, "availableAgents": len(snapshot.online_agents),
        "averageWaitTime": f"{seconds / 60:.1f} minutes"}}})


@routes.get("/api/agents/waiting-sessions", name="agent_waiting_sessions")
@describe("support", auth=STAFF, answers={200: out.WaitingSessionsAnswer})
async def waiting_sessions(request: web.Request) -> web.Response:
    """The tenant's queue, oldest escalation first."""
    principal = await authenticate(request, allow=STAFF)
    async with request.app[DB].acquire() as conn:
        queue = await sessions.waiting_sessions(conn, principal.tenant_id)
    return json_response({"success": True, "sessions": queue})


@routes.get("/api/agents/active-chats", name="agent_active_chats")
@describe("support", auth=STAFF, answers={200: out.ActiveChatsAnswer})
async def active_chats(request: web.Request) -> web.Response:
    """The chats the agent holds (an admin or secret key: every agent's), with message counts and visitor info."""
    principal = await authenticate(request, allow=STAFF)
    agent_id = int(principal.subject) if principal.role == AGENT else None
    async with request.app[DB].acquire() as conn:
        rows = await store.active_chats(conn, principal.tenant_id, agent_id)
    return json_response({"success": True, "data": [{
        "session_id": r["session_id"], "site_key": r["site_key"],
        "visitor_name": r["visitor_name"] or (r["visitor_info"] or {}).get("name") or "Customer",
        "visitor_email": r["visitor_email"], "business_name": r["business_name"], "messageCount": r["message_count"],
        "started_at": iso(r["started_at"]), "accepted_at": iso(r["accepted_at"]), "agent_id": r["assigned_agent_id"],
        "user_id": r["user_id"], "visitor_info": r["visitor_info"] or {}, "lastSeq": r["last_seq"],
    } for r in rows]})


@routes.post("/api/chat/rating", name="chat_rating")
@describe("support", auth=(PUBLISHABLE_KEY, VISITOR), body=RatingBody, answers={201: out.RatingAnswer},
          errors=(404, 409))
async def rate_chat(request: web.Request) -> web.Response:
    """The visitor rates their closed chat 1-5 once (409 on a second try)."""
    principal = await authenticate(request, allow=(PUBLISHABLE_KEY, VISITOR))
    body = validate(RatingBody, await read_json(request))
    if body.get("tenantId"):
        principal.check_tenant(body["tenantId"])
    if principal.role == VISITOR and body["sessionId"] != principal.session_id:
        raise Forbidden("This token belongs to another session", errors={"sessionId": "not this token's session"})
    if principal.role == PUBLISHABLE_KEY:  # only whoever holds the session's secret rates it
        async with request.app[DB].acquire() as conn:
            await sessions.check_resume(conn, body["sessionId"], principal.tenant_id, secret=body.get("sessionSecret"),
                                        proven=False)
    row = await request.app[SUPPORT].rate(principal.tenant_id, body["sessionId"], body["rating"], body.get("comment"))
    return json_response({"success": True, "message": "Thank you for your feedback", "data": {
        "sessionId": row["session_id"], "rating": row["rating"], "comment": row["comment"],
        "createdAt": iso(row["created_at"])}}, status=201)
