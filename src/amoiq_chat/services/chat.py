"""Chat use cases shared by the HTTP routes and the sockets: post, history, presence, typing, revocation."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiopg

from ..bus import FOR_STAFF, Bus, encode_event, rooms
from ..errors import ValidationError
from ..jsonutil import dumps, now_iso
from ..store import messages as stored
from . import messages, sessions
from .presence import Gone, user_entry
from .batches import Draft, Stored
from .writer import MessageWriter

log = logging.getLogger(__name__)

# Called after a visitor message is stored (not for a repeated clientMessageId): the seam where
# the assistant and the escalation rules of the handoff issue plug in. Keep them quick.
VisitorHook = Callable[[dict, Stored], Awaitable[None]]


@dataclass
class ChatHooks:
    """Extension points of the chat."""

    after_visitor_message: list[VisitorHook] = field(default_factory=list)


def visitor_metadata(fields: dict[str, Any]) -> dict[str, Any]:
    """What a visitor message keeps of the 001 page fields."""
    keep = ("domain", "origin", "url", "referrer", "siteId", "fingerprint", "userInfo")
    return {k: fields[k] for k in keep if fields.get(k) is not None}


async def post_visitor_message(writer: MessageWriter, session: dict, text: str, *,
                               client_message_id: str | None, metadata: dict[str, Any]) -> Stored:
    """Store a visitor's message (the writer publishes it to the conversation)."""
    return await writer.submit(Draft(
        tenant_id=session["tenant_id"], session_id=session["session_id"], sender_type="visitor", text=text,
        sender_id=session.get("user_id"), user_id=session.get("user_id"), client_message_id=client_message_id,
        metadata=metadata, session=session,
    ))


async def after_visitor_message(hooks: ChatHooks, session: dict, stored: Stored) -> None:
    """Run the hooks for a newly stored visitor message (not for a repeated clientMessageId)."""
    if stored.duplicate:
        return
    for hook in hooks.after_visitor_message:
        try:
            await hook(session, stored)
        except Exception:  # a failing hook must not break the visitor's socket or request
            log.exception("after_visitor_message hook %r failed", hook)


async def post_agent_message(writer: MessageWriter, session: dict, staff: dict[str, Any], text: str, *,
                             client_message_id: str | None) -> Stored:
    """Store an agent's reply in a session."""
    return await writer.submit(Draft(
        tenant_id=session["tenant_id"], session_id=session["session_id"], sender_type="agent", text=text,
        sender_id=f"{staff['role']}:{staff['id']}", user_id=session.get("user_id"),
        client_message_id=client_message_id, metadata={"agentName": staff["name"], "agentId": staff["id"]},
        session=session,
    ))


def ack_frame(stored: Stored, client_message_id: str | None) -> dict[str, Any]:
    """The `ack` of a stored message (the same id and seq when a clientMessageId repeats)."""
    return {"type": "ack", "clientMessageId": client_message_id, "id": stored.id, "seq": stored.seq,
            "sessionId": stored.row["session_id"], "duplicate": stored.duplicate,
            "timestamp": messages.timestamp(stored.row)}


async def history_page(pool: aiopg.Pool, tenant_id: str, *, session_id: str | None, user_id: str | None,
                       before: str | None, limit: int) -> tuple[list[dict], bool]:
    """A page of a session's (or, with user_id, a user's) messages before the message `before`; and whether more exist."""
    async with pool.acquire() as conn:
        if session_id:
            await sessions.find_session(conn, session_id, tenant_id)
        if before and await stored.find_message(conn, tenant_id, before) is None:
            raise ValidationError("before names no message of this tenant", errors={"before": "unknown message"})
        return await stored.page(conn, tenant_id, session_id=None if user_id else session_id,
                                 user_id=user_id, before=before, limit=limit)


async def transcript(pool: aiopg.Pool, tenant_id: str, session_id: str) -> tuple[list[dict], dict[str, Any]]:
    """A session of the tenant's every message and its customerInfo (the agent's history view)."""
    async with pool.acquire() as conn:
        session = await sessions.find_session(conn, session_id, tenant_id)
        rows = await stored.session_history(conn, session_id)
        return rows, await sessions.customer_info(conn, session)


async def push_waiting_sessions(pool: aiopg.Pool, bus: Bus, tenant_id: str) -> None:
    """Send the tenant's queue to all its staff sockets."""
    async with pool.acquire() as conn:
        queue = await sessions.waiting_sessions(conn, tenant_id)
    frame = {"type": "waiting_sessions", "sessions": queue, "timestamp": now_iso()}
    await bus.publish(rooms.tenant(tenant_id), encode_event([(FOR_STAFF, dumps(frame))]))


async def publish_typing(bus: Bus, session_id: str, frame: dict[str, Any], audience: str, exclude: str) -> None:
    """Relay a typing indicator to the other side of a conversation."""
    await bus.publish(rooms.conversation(session_id), encode_event([(audience, dumps(frame))], exclude=exclude))


async def announce_online(bus: Bus, tenant_id: str, field_name: str, value: dict[str, Any]) -> None:
    """Tell the tenant's staff sockets a visitor came online."""
    frame = {"type": "user_online", **user_entry(field_name, value)}
    await bus.publish(rooms.admin(tenant_id), encode_event([(FOR_STAFF, dumps(frame))]))


async def announce_offline(bus: Bus, gone: Gone) -> None:
    """Tell the tenant's staff sockets a visitor's last socket closed."""
    entry = user_entry(gone.field, gone.value)
    frame = {"type": "user_offline", "userId": entry["userId"], "sessionId": entry.get("sessionId"), "timestamp": now_iso()}
    await bus.publish(rooms.admin(gone.tenant_id), encode_event([(FOR_STAFF, dumps(frame))]))



async def revoke_agent(bus: Bus, agent_id: int) -> None:
    """Close every socket an agent has open, on every process (deactivated, deleted, or a new password)."""
    frame = {"type": "error", "code": "INVALID_JWT_TOKEN", "message": "This account no longer exists or is deactivated",
             "errors": {}}
    await bus.publish(rooms.agent(agent_id), encode_event([(FOR_STAFF, dumps(frame))],
                                                          close={"code": 1008, "reason": "Credentials revoked"}))
