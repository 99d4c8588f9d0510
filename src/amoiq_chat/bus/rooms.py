"""The names on Redis: pub/sub rooms (SPEC section 10), the session cache key and the webhook job stream."""
from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from ..jsonutil import dumps, iso, now_iso

CONVERSATION = "conversation:"  # visitor tabs and the staff following that chat
WEBHOOK_STREAM = "meta:webhook_jobs"  # one entry per job: outbox_id, message_id, tenant_id
WEBHOOK_DEAD_STREAM = "meta:webhook_dead"  # deliveries that used up their attempts, with their last error
SESSION_TTL = 24 * 3600  # session:{sessionId} lives this long after its last refresh (SPEC section 5)


def conversation(session_id: str) -> str:
    """The room of one conversation."""
    return CONVERSATION + session_id


def conversation_of(room: str) -> str | None:
    """The session id of a conversation room (None for other rooms)."""
    return room[len(CONVERSATION):] if room.startswith(CONVERSATION) else None


def tenant(tenant_id: str) -> str:
    """The room of a tenant's queue updates (every agent of the tenant)."""
    return f"tenant:{tenant_id}"


def admin(tenant_id: str) -> str:
    """The room of a tenant's presence updates (its admins' and agents' sockets)."""
    return f"admin:{tenant_id}"


def agent(agent_id: int | str) -> str:
    """The room of one agent's sockets."""
    return f"agent:{agent_id}"


def user(admin_id: int | str) -> str:
    """The room of one admin's sockets."""
    return f"user:{admin_id}"


def session_key(session_id: str) -> str:
    """The Redis key of a session's cache entry, `session:{sessionId}`."""
    return f"session:{session_id}"


def session_entry(row: dict) -> bytes:
    """The `session:{sessionId}` value of SPEC section 5, from a session row."""
    value: dict[str, Any] = {"userId": row.get("user_id"), "fingerprint": row.get("fingerprint"),
                             "tenantId": row["tenant_id"], "createdAt": iso(row.get("started_at")),
                             "lastActivity": now_iso()}
    return dumps(value)


async def refresh_session(redis: aioredis.Redis, row: dict) -> None:
    """Write a session's `session:{sessionId}` entry (24 h TTL) now."""
    await redis.set(session_key(row["session_id"]), session_entry(row), ex=SESSION_TTL)
