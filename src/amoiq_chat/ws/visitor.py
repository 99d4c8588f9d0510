"""`/ws/{sessionId}`: the visitor's socket and its frames (message, typing, join, sync)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, web

from ..apidoc import describe
from .. import credentials
from ..bus import FOR_STAFF, FOR_VISITORS
from ..errors import Forbidden, ValidationError
from ..jsonutil import now_iso
from ..http import validate
from ..appkeys import BUS, CHAT_HOOKS, DB, PRESENCE, PUBLIC_WIDGETS, REDIS, SETTINGS, WRITER
from ..services import chat, presence, sessions, visitors
from ..visitor_schemas import MessageBody, VisitorFields, message_text
from .frames import JoinFrame, SyncFrame, TypingFrame, plain_message
from .registry import Registry, new_socket, read_frames
from .connection import Connection

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
# What a socket keeps of its session row: what storing a message needs, and what its session:{id}
# entry is made of (the writer refreshes it; presence writes it again after Redis lost it).
SOCKET_SESSION_FIELDS = ("session_id", "tenant_id", "site_key", "user_id", "fingerprint", "started_at")
visitor_frames = Registry("visitor")


def parse_since(request: web.Request) -> int | None:
    """The `?since=N` of a socket URL (400 when not a whole number >= 0)."""
    text = request.query.get("since")
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise ValidationError("since must be a whole number >= 0", errors={"since": "must be a whole number >= 0"})
    return int(text)


async def _session_for_token(request: web.Request, session_id: str, token: str) -> dict:
    principal = credentials.verify_token(request.app[SETTINGS], token)
    if principal.role != credentials.VISITOR:
        raise Forbidden("This socket needs a visitor token (agents use /ws/agent/{agentId})")
    if principal.session_id != session_id:
        raise Forbidden("This token belongs to another session")
    claim = visitors.Claim(principal.tenant_id, session_id, origin=request.headers.get("Origin"), origin_required=True,
                           token=principal)
    app = request.app
    return (await visitors.enter(app[DB], app[REDIS], app[PUBLIC_WIDGETS], claim, create=False)).session


@routes.get("/ws/{sessionId}", name="ws_visitor")
@describe("websocket", socket=visitor_frames,
          params={"token": "a visitor JWT whose sid is this session (binds the socket at once)",
                  "since": "replay the messages stored after this seq, then go live"},
          sends={"connection_status": "on connect, and `joined` once the socket follows its conversation",
                 "ack": "{clientMessageId, id, seq, sessionId, duplicate, timestamp} once a message is stored",
                 "meta_message_created": "{message: {id, text, sender, timestamp, sessionId, userId, tenantId, seq}}",
                 "message": "an agent's or the assistant's reply (004 shape, metadata.agentName, isAI, seq)",
                 "typing": "the other side is typing", "agent_joined": "an agent took the chat",
                 "queue_update": "{sessionId, position, estimatedWait, status} while escalated and waiting",
                 "agent_left": "the agent returned the chat to the assistant", "chat_closed": "{closedBy, canRate}",
                 "rating_received": "{sessionId, rating, comment} once a `rating` is stored",
                 "error": "a refused frame (ErrorFrame); the socket stays open unless a close follows"})
async def visitor_socket(request: web.Request) -> web.WebSocketResponse:
    """Serve a visitor's socket: with ?token= it is bound at once; without, its first frame with siteKey joins."""
    app = request.app
    session_id = sessions.check_session_id(request.match_info["sessionId"])
    since = parse_since(request)
    token = request.query.get("token")
    session = await _session_for_token(request, session_id, token) if token else None
    ws = new_socket(app[SETTINGS].max_frame_bytes)
    await ws.prepare(request)
    conn = Connection(app, ws, FOR_VISITORS)
    conn.session_id = session_id
    conn.origin, conn.since = request.headers.get("Origin"), since
    conn.start(request)
    try:
        if session is None:
            conn.send({"type": "connection_status", "status": "connected", "sessionId": session_id,
                       "joined": False, "timestamp": now_iso()})
        else:
            await _join(conn, session, {}, "connected")
        await read_frames(conn, visitor_frames)
    finally:
        # Shielded: aiohttp cancels the handler of a lost connection, and a cancel landing here
        # would leave the visitor "online" and the socket's writer task running.
        await asyncio.shield(_close(conn))
    return ws


async def _close(conn: Connection) -> None:
    """Presence first (user_offline when it was the last socket), then stop the socket."""
    await _leave(conn)
    await conn.stop()


async def _join(conn: Connection, session: dict, fields: dict[str, Any], status: str, secret: str | None = None) -> None:
    """Bind the socket to its session: presence, the conversation room, replay after ?since, then
    `connection_status` `joined: true` with `lastSeq` (and `sessionSecret` when the join created the session)."""
    app = conn.app
    conn.tenant_id = session["tenant_id"]
    conn.user_id = session.get("user_id")
    # The rest of the row (its status, say) changes and is read when needed.
    conn.session = {name: session.get(name) for name in SOCKET_SESSION_FIELDS}
    origin = fields.get("origin") or conn.origin
    value = {"sessionId": session["session_id"], "connectedAt": now_iso(),
             "domain": fields.get("domain") or (urlsplit(origin).hostname if origin else None),
             "origin": origin, "url": fields.get("url")}
    field_name = presence.presence_field(session["session_id"], conn.user_id)
    conn.presence_field = field_name
    if await app[PRESENCE].connected(conn.tenant_id, field_name, value, conn.session):
        await chat.announce_online(app[BUS], conn.tenant_id, field_name, value)
    await conn.follow(session["session_id"], conn.since, _joined_status(conn, status, secret))


def _joined_status(conn: Connection, status: str, secret: str | None = None) -> dict[str, Any]:
    """The `connection_status` a socket gets once it follows its conversation (the transport adds `lastSeq`)."""
    frame = {"type": "connection_status", "status": status, "sessionId": conn.session_id, "joined": True,
             "timestamp": now_iso()}
    if secret:
        frame["sessionSecret"] = secret  # this socket's first frame created the session: shown this once
    return frame


async def _leave(conn: Connection) -> None:
    if conn.presence_field is None:
        return
    app = conn.app
    try:
        gone = await app[PRESENCE].disconnected(conn.tenant_id, conn.presence_field)
        if gone is not None:
            await chat.announce_offline(app[BUS], gone)
    except Exception as exc:  # Redis trouble: the sweeper clears it once this process's heartbeat stops
        log.warning("presence of %s not cleared: %s", conn.session_id, exc)


async def join_with_site_key(conn: Connection, frame: dict) -> bool:
    """Before each frame of a tokenless socket: the first one carrying siteKey joins the session
    (an existing one with its sessionSecret). True when that frame was a `join`: its
    `connection_status` was its answer."""
    if frame.get("sessionId") not in (None, conn.session_id):
        raise Forbidden("This socket belongs to another session", errors={"sessionId": "does not match the socket"})
    if conn.session is not None:
        if frame.get("tenantId") not in (None, conn.tenant_id):
            raise Forbidden("This session belongs to another tenant", errors={"tenantId": "does not match the session"})
        return False
    site_key = frame.get("siteKey") or frame.get("siteId")
    if not isinstance(site_key, str) or not site_key:
        raise ValidationError("Send siteKey with the first frame (or connect with ?token=)",
                              errors={"siteKey": "required to join the session"})
    fields = validate(VisitorFields, frame)
    app = conn.app
    claim = visitors.Claim(fields.get("tenantId"), conn.session_id, site_key=site_key, origin=conn.origin,
                           origin_required=True, user_id=fields.get("userId"), user_hash=fields.get("userHash"),
                           fingerprint=fields.get("fingerprint"), user_info=fields.get("userInfo") or None,
                           secret=fields.get("sessionSecret"))
    try:
        visit = await visitors.enter(app[DB], app[REDIS], app[PUBLIC_WIDGETS], claim)
    except Forbidden as exc:
        if "origin" in exc.errors:  # a page the widget does not allow: say why, then close
            exc.details["close"] = WSCloseCode.POLICY_VIOLATION
        raise
    await _join(conn, visit.session, fields, "joined", visit.secret)
    return frame.get("type") == "join"


visitor_frames.before = join_with_site_key


@visitor_frames.handler("join", JoinFrame())
async def on_join(conn: Connection, frame: dict) -> None:
    """A `join` on a socket already joined: `connection_status` joined again, once caught up (a first
    `join` was answered by the join itself, in `before`)."""
    await conn.follow(conn.session_id, conn.cursors.get(conn.session_id), _joined_status(conn, "joined"))


@visitor_frames.handler("message", MessageBody(), fast=plain_message)
async def on_message(conn: Connection, frame: dict) -> None:
    """Store the visitor's message; ack it after commit (everyone gets it through the bus)."""
    app = conn.app
    if frame.get("userId") not in (None, conn.user_id) and conn.user_id is not None:
        raise Forbidden("userId does not match this session", errors={"userId": "does not match the session"})
    text = message_text(frame)
    stored = await chat.post_visitor_message(
        app[WRITER], conn.session, text, client_message_id=frame.get("clientMessageId"),
        metadata=chat.visitor_metadata(frame))
    conn.send(chat.ack_frame(stored, frame.get("clientMessageId")))
    await chat.after_visitor_message(app[CHAT_HOOKS], conn.session, stored)


@visitor_frames.handler("typing", TypingFrame())
async def on_typing(conn: Connection, frame: dict) -> None:
    """Relay the visitor's typing indicator to the staff following the chat."""
    typing = {"type": "typing", "sessionId": conn.session_id, "isTyping": frame["isTyping"], "sender": "customer",
              "timestamp": now_iso()}
    await chat.publish_typing(conn.app[BUS], conn.session_id, typing, FOR_STAFF, conn.id)


@visitor_frames.handler("sync", SyncFrame())
async def on_sync(conn: Connection, frame: dict) -> None:
    """Replay everything after `since`, then stay live."""
    await conn.follow(conn.session_id, frame["since"])
