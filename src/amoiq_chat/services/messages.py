"""Stored messages: the SQL that reads them, and their shape on each surface (SPEC section 12).

Stored sender types are visitor/agent/ai/system. The 001 surfaces (GET /api/chat/messages,
`meta_message_created`, webhook `senderType`) say user/agent/bot/system; the 004 surfaces
(`widgets/sessions/{id}/messages`, `chat_accepted.messages`, `new_message`) say customer/agent
with `isAI`. Every mapping lives here, one function per surface.
"""
from __future__ import annotations

from typing import Any

import aiopg

from .. import db
from ..bus import FOR_STAFF, FOR_VISITORS, Event, encode_event
from ..jsonutil import dumps, iso
from . import sessions

SENDER_001 = {"visitor": "user", "agent": "agent", "ai": "bot", "system": "system"}
COLUMNS = ("id, tenant_id, session_id, seq, sender_type, sender_id, user_id, message, message_type,"
           " client_message_id, metadata, created_at")
REPLAY_PAGE = 500


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


# Queries -----------------------------------------------------------------------------------

async def messages_after(conn: aiopg.Connection, session_id: str, after: int, upto: int | None = None,
                         limit: int = REPLAY_PAGE) -> list[dict]:
    """Messages of a session with after < seq <= upto, in seq order."""
    return await db.fetch_all(
        conn,
        f"SELECT {COLUMNS} FROM messages WHERE session_id = %s AND seq > %s"
        " AND (%s::bigint IS NULL OR seq <= %s::bigint) ORDER BY seq LIMIT %s",
        (session_id, after, upto, upto, limit),
    )


async def session_history(conn: aiopg.Connection, session_id: str) -> list[dict]:
    """Every message of a session, oldest first."""
    return await db.fetch_all(conn, f"SELECT {COLUMNS} FROM messages WHERE session_id = %s ORDER BY seq", (session_id,))


async def page(conn: aiopg.Connection, tenant_id: str, *, session_id: str | None, user_id: str | None,
               before: str | None, limit: int) -> tuple[list[dict], bool]:
    """Up to `limit` messages before the message `before` (or the newest), oldest first; and whether more exist.

    With `user_id` the messages of all that user's sessions of the tenant; else those of `session_id`.
    """
    where = ["m.tenant_id = %s"]
    params: list[Any] = [tenant_id]
    if user_id is not None:
        where.append("m.session_id IN (SELECT session_id FROM sessions WHERE tenant_id = %s AND user_id = %s)")
        params += [tenant_id, user_id]
    if session_id is not None:
        where.append("m.session_id = %s")
        params.append(session_id)
    if before is not None and user_id is None:
        where.append("m.seq < (SELECT seq FROM messages WHERE id = %s)")
        params.append(before)
    elif before is not None:
        where.append("(m.created_at, m.seq, m.id) < (SELECT created_at, seq, id FROM messages WHERE id = %s)")
        params.append(before)
    # One session: seq order. Several: time order (seq breaks ties within a session).
    order = "m.seq DESC" if user_id is None else "m.created_at DESC, m.seq DESC, m.id DESC"
    rows = await db.fetch_all(
        conn,
        f"SELECT {', '.join('m.' + c.strip() for c in COLUMNS.split(','))} FROM messages m"
        f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s",
        (*params, limit + 1),
    )
    more = len(rows) > limit
    return list(reversed(rows[:limit])), more


async def find_by_ids(conn: aiopg.Connection, message_ids: list[str]) -> list[dict]:
    """Messages by id (any tenant: the caller knows them)."""
    return await db.fetch_all(conn, f"SELECT {COLUMNS} FROM messages WHERE id = ANY(%s::uuid[])", (message_ids,))


async def find_message(conn: aiopg.Connection, tenant_id: str, message_id: str) -> dict | None:
    """One message of the tenant by id."""
    return await db.fetch_one(conn, f"SELECT {COLUMNS} FROM messages WHERE id = %s AND tenant_id = %s",
                              (message_id, tenant_id))


class Replay:
    """Where sockets read the messages they missed (ws.sequencer.ReplaySource), over the pool."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self.pool = pool

    async def last_seq(self, session_id: str) -> int:
        """The seq of the session's newest stored message (0 when none)."""
        async with self.pool.acquire() as conn:
            return await sessions.last_seq(conn, session_id)

    async def after(self, session_id: str, after: int, upto: int | None, limit: int) -> list[dict]:
        """Up to `limit` stored messages with after < seq <= upto, in seq order."""
        async with self.pool.acquire() as conn:
            return await messages_after(conn, session_id, after, upto, limit)

    frames = staticmethod(frames_for)
