"""`/ws/agent/{agentId}?token=`: the socket of an agent (or admin) and its frames."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..apidoc import describe
from .. import auth, credentials
from ..bus import FOR_STAFF, FOR_VISITORS, rooms
from ..errors import Forbidden, Unauthorized, ValidationError
from ..jsonutil import now_iso
from ..appkeys import BUS, DB, HUB, PRESENCE, SETTINGS, SUPPORT, WRITER
from ..services import chat, sessions
from ..store import sessions as stored_sessions
from ..visitor_schemas import message_text
from .frames import AgentTypingFrame, NoFields, SendMessageFrame, SessionFrame, SyncFrame
from .registry import Registry, new_socket, read_frames
from .connection import Connection

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
agent_frames = Registry("agent")


async def _staff_for_token(request: web.Request) -> dict:
    auth.check_staff_origin(request)
    token = request.query.get("token") or auth.bearer(request)
    if not token:
        raise Unauthorized("Connect with ?token=<JWT>")
    principal = credentials.verify_token(request.app[SETTINGS], token)
    if principal.role not in credentials.STAFF_ROLES:
        raise Forbidden("This socket is for agents and admins")
    if principal.subject != request.match_info["agentId"]:
        raise Forbidden("The token does not belong to this agentId")
    await auth.check_account(request, principal)  # deleted, deactivated, or password changed since
    async with request.app[DB].acquire() as conn:
        member = await sessions.staff_member(conn, principal.role, principal.subject, principal.tenant_id)
    return {"id": member["id"], "role": principal.role, "name": member["name"], "tenant_id": principal.tenant_id}


@routes.get("/ws/agent/{agentId}", name="ws_agent")
@describe("websocket", socket=agent_frames,
          params={"token": "the agent's JWT (or an admin's whose sub is agentId)"},
          sends={"connection_status": "on connect", "waiting_sessions": "the queue",
                 "chat_accepted": "a chat this agent took, with its history (every socket of the agent)",
                 "new_message": "every message of a followed chat", "typing": "a visitor is typing",
                 "user_online": "a visitor came online", "user_offline": "a visitor's last socket closed",
                 "online_users_list": "answer to get_online_users", "ack": "a send_message was stored",
                 "agent_left": "a followed chat went back to the assistant",
                 "chat_closed": "a followed chat was closed",
                 "error": "a refused frame (ErrorFrame)"})
async def agent_socket(request: web.Request) -> web.WebSocketResponse:
    """Serve a staff socket: tenant and presence rooms, its own room, and the chats it holds."""
    app = request.app
    staff = await _staff_for_token(request)
    ws = new_socket(app[SETTINGS].max_frame_bytes)
    await ws.prepare(request)
    conn = Connection(app, ws, FOR_STAFF)
    conn.tenant_id = staff["tenant_id"]
    conn.staff = staff
    conn.start(request)
    available = False
    try:
        hub_rooms = [rooms.tenant(conn.tenant_id), rooms.admin(conn.tenant_id),
                     rooms.agent(staff["id"]) if staff["role"] == credentials.AGENT else rooms.user(staff["id"])]
        for room in hub_rooms:
            await app[HUB].join(conn, room)
        conn.send({"type": "connection_status", "status": "connected", "agentId": staff["id"], "role": staff["role"],
                   "name": staff["name"], "timestamp": now_iso()})
        if staff["role"] == credentials.AGENT:
            async with app[DB].acquire() as db_conn:
                held = await stored_sessions.assigned_session_ids(db_conn, staff["id"])
            for session_id in held:
                await conn.follow(session_id)
            await app[SUPPORT].board.agent_connected(conn.tenant_id, staff["id"])  # available from now on
            available = True
        await read_frames(conn, agent_frames)
    finally:
        await asyncio.shield(_close(conn, available))  # completes even when aiohttp cancels a lost connection's handler
    return ws


async def _close(conn: Connection, available: bool) -> None:
    """Availability first (the queue may move), then stop the socket."""
    if available:
        try:
            await conn.app[SUPPORT].board.agent_disconnected(conn.tenant_id, conn.staff["id"])
        except Exception as exc:  # Redis trouble: the entry expires by itself once no process renews it
            log.warning("availability of agent %s not cleared: %s", conn.staff["id"], exc)
    await conn.stop()


async def _session_of_tenant(conn: Connection, session_id: str) -> dict:
    async with conn.app[DB].acquire() as db_conn:
        return await sessions.find_session(db_conn, session_id, conn.tenant_id)


@agent_frames.handler("get_waiting_sessions", NoFields())
async def on_get_waiting_sessions(conn: Connection, frame: dict) -> None:
    """Answer with the tenant's queue."""
    async with conn.app[DB].acquire() as db_conn:
        queue = await sessions.waiting_sessions(db_conn, conn.tenant_id)
    conn.send({"type": "waiting_sessions", "sessions": queue, "timestamp": now_iso()})


@agent_frames.handler("accept_chat", SessionFrame())
async def on_accept_chat(conn: Connection, frame: dict) -> None:
    """Take the chat if nobody holds it; every socket of this agent gets chat_accepted, the loser an error."""
    if conn.staff["role"] != credentials.AGENT:
        raise Forbidden("Only agents accept chats; admins can follow one with a sync frame")
    await conn.app[SUPPORT].accept(conn.tenant_id, frame["sessionId"], conn.staff)


@agent_frames.handler("send_message", SendMessageFrame())
async def on_send_message(conn: Connection, frame: dict) -> None:
    """Store the agent's reply in a chat it holds (admins: any chat of the tenant); ack after commit."""
    session = await _session_of_tenant(conn, frame["sessionId"])
    if conn.staff["role"] == credentials.AGENT and session["assigned_agent_id"] != conn.staff["id"]:
        raise Forbidden("Accept this chat before replying", errors={"sessionId": "not assigned to you"})
    if session["status"] == "closed":
        raise Forbidden("This chat is closed", errors={"sessionId": "closed"})
    text = message_text(frame)
    stored = await chat.post_agent_message(conn.app[WRITER], session, conn.staff, text,
                                           client_message_id=frame.get("clientMessageId"))
    conn.send(chat.ack_frame(stored, frame.get("clientMessageId")))


@agent_frames.handler("typing", AgentTypingFrame())
async def on_typing(conn: Connection, frame: dict) -> None:
    """Relay the agent's typing indicator to the visitor."""
    await _session_of_tenant(conn, frame["sessionId"])
    typing = {"type": "typing", "sessionId": frame["sessionId"], "isTyping": frame["isTyping"], "sender": "agent",
              "agentName": conn.staff["name"], "timestamp": now_iso()}
    await chat.publish_typing(conn.app[BUS], frame["sessionId"], typing, FOR_VISITORS, conn.id)


@agent_frames.handler("get_online_users", NoFields())
async def on_get_online_users(conn: Connection, frame: dict) -> None:
    """Answer with the tenant's online visitors."""
    if frame.get("tenantId") not in (None, conn.tenant_id):
        raise Forbidden("This credential does not belong to that tenant", errors={"tenantId": "another tenant"})
    users = await conn.app[PRESENCE].online(conn.tenant_id)
    conn.send({"type": "online_users_list", "users": users, "timestamp": now_iso()})


@agent_frames.handler("sync", SyncFrame())
async def on_sync(conn: Connection, frame: dict) -> None:
    """Follow a chat of the tenant: replay after `since`, then live."""
    if "sessionId" not in frame:
        raise ValidationError("sync on an agent socket needs a sessionId", errors={"sessionId": "required"})
    await _session_of_tenant(conn, frame["sessionId"])
    await conn.follow(frame["sessionId"], frame["since"])
