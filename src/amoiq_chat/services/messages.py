"""Stored messages: their shape on each surface (SPEC section 12); the SQL is in store/messages.py.

Stored sender types are visitor/agent/ai/system. The 001 surfaces (GET /api/chat/messages,
`meta_message_created`, webhook `senderType`) say user/agent/bot/system; the 004 surfaces
(`widgets/sessions/{id}/messages`, `chat_accepted.messages`, `new_message`) say customer/agent
with `isAI`. Every mapping lives here, one function per surface.
"""
from __future__ import annotations

from typing import Any

import aiopg

from ..bus import FOR_STAFF, FOR_VISITORS, Event, encode_event
from ..jsonutil import dumps, iso
from ..store import messages as stored_messages, sessions as stored_sessions

SENDER_001 = {"visitor": "user", "agent": "agent", "ai": "bot", "system": "system"}


# Surfaces ----------------------------------------------------------------------------------

def timestamp(row: dict) -> str:
    """The message's time in the seeds' format, formatted once per row."""
    stamp = row.get("timestamp")
    if stamp is None:
        stamp = row["timestamp"] = iso(row["created_at"])
    return stamp


def to_001(row: dict) -> dict[str, Any]:
    """A message as GET /api/chat/messages and meta_message_created show it."""
    return {
        "id": str(row["id"]),
        "text": row["message"],
        "sender": SENDER_001[row["sender_type"]],
        "timestamp": timestamp(row),
        "sessionId": row["session_id"],
        "userId": row["user_id"],
        "tenantId": row["tenant_id"],
        "seq": row["seq"],
    }


def to_004(row: dict) -> dict[str, Any]:
    """A message as the agent surfaces show it (customer/agent with isAI)."""
    return {
        "id": str(row["id"]),
        "text": row["message"],
        "sender": "customer" if row["sender_type"] == "visitor" else "agent",
        "timestamp": timestamp(row),
        "isAI": row["sender_type"] == "ai",
        "seq": row["seq"],
    }


def webhook_payload(row: dict) -> dict[str, Any]:
    """The body of a message.created webhook (SPEC section 8), made from the stored message."""
    return {"event": "message.created", "timestamp": timestamp(row), "data": webhook_data(row)}


def webhook_data(row: dict) -> dict[str, Any]:
    """The `data` of a message.created webhook."""
    return {
        "messageId": str(row["id"]),
        "sessionId": row["session_id"],
        "userId": row["user_id"],
        "tenantId": row["tenant_id"],
        "text": row["message"],
        "senderType": SENDER_001[row["sender_type"]],
    }


def reply_frame(row: dict) -> dict[str, Any]:
    """The `message` frame a visitor gets for an agent/AI reply (004 shape)."""
    metadata = row.get("metadata") or {}
    is_ai = row["sender_type"] == "ai"
    return {
        "type": "message",
        "id": str(row["id"]),
        "message": row["message"],
        "sessionId": row["session_id"],
        "seq": row["seq"],
        "timestamp": timestamp(row),
        "metadata": {"agentName": metadata.get("agentName") or ("AI Assistant" if is_ai else None),
                     "isAI": is_ai},
    }


def meta_frame(row: dict) -> dict[str, Any]:
    """The `meta_message_created` frame every visitor tab gets for every message."""
    return {"type": "meta_message_created", "message": to_001(row)}


def new_message_frame(row: dict) -> dict[str, Any]:
    """The `new_message` frame staff sockets get."""
    return {"type": "new_message", "sessionId": row["session_id"], "message": to_004(row), "timestamp": timestamp(row)}


def frames_for(row: dict) -> list[tuple[str, bytes]]:
    """Every frame one stored message produces, serialised once, with its audience."""
    frames = []
    if row["sender_type"] != "visitor":
        frames.append((FOR_VISITORS, dumps(reply_frame(row))))
    frames.append((FOR_VISITORS, dumps(meta_frame(row))))
    frames.append((FOR_STAFF, dumps(new_message_frame(row))))
    return frames


def message_event(row: dict, origin: str) -> tuple[Event, bytes]:
    """The bus event of one stored message (carries its session and seq): for local sockets, and encoded."""
    frames = frames_for(row)
    return (Event(frames, row["session_id"], row["seq"]),
            encode_event(frames, session_id=row["session_id"], seq=row["seq"], origin=origin))


class Replay:
    """Where sockets read the messages they missed (ws.sequencer.ReplaySource), over the pool."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self.pool = pool

    async def last_seq(self, session_id: str) -> int:
        """The seq of the session's newest stored message (0 when none)."""
        async with self.pool.acquire() as conn:
            return await stored_sessions.last_seq(conn, session_id)

    async def after(self, session_id: str, after: int, upto: int | None, limit: int) -> list[dict]:
        """Up to `limit` stored messages with after < seq <= upto, in seq order."""
        async with self.pool.acquire() as conn:
            return await stored_messages.messages_after(conn, session_id, after, upto, limit)

    frames = staticmethod(frames_for)
