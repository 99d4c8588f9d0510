"""Visitor presence in Redis, counted per socket across processes (SPEC section 5).

`online_users:{tenantId}` is the SPEC's hash (field userId or `anon:{sessionId}`). Beside it,
`presence:sockets:{tenantId}:{field}` counts each process's open sockets of that visitor, so
the entry goes only when the last socket anywhere closes; `presence:process:{processId}` is a
heartbeat key with a TTL, and `presence:entries:{processId}` lists what that process holds, so
a sweeper can clear a process that died. Each process also keeps what it holds in memory, so it
can write it all again when Redis lost it (restarted empty, flushed, or this process swept after
its heartbeat lapsed in an outage): `restore`.
"""
from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ..bus import rooms
from ..jsonutil import dumps, loads

PROCESSES = "presence:processes"
SEP = "\n"

_CONNECT = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[3], ARGV[4])
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
"""

_DISCONNECT = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[3])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  local value = redis.call('HGET', KEYS[2], ARGV[2])
  if redis.call('HDEL', KEYS[2], ARGV[2]) == 1 then return value end
end
return false
"""

_FORGET = """
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then
  local value = redis.call('HGET', KEYS[2], ARGV[2])
  if redis.call('HDEL', KEYS[2], ARGV[2]) == 1 then return value end
end
return false
"""


# Idempotent: this process's exact socket count, its entry, the visitor's online entry if missing.
_RESTORE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[5])
return redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[4])
"""


def new_process_id() -> str:
    """An id for this process, unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def presence_field(session_id: str, user_id: str | None) -> str:
    """The online_users field of a visitor."""
    return user_id or f"anon:{session_id}"


def user_entry(field: str, value: dict[str, Any]) -> dict[str, Any]:
    """One online user as the REST list and the frames show it (userId null when anonymous)."""
    return {"userId": None if field.startswith("anon:") else field, **value}


@dataclass
class Held:
    """A visitor this process holds sockets of: how many, their online entry, their sessions' rows."""

    count: int
    value: dict[str, Any]
    sessions: dict[str, dict]


@dataclass(frozen=True)
class Gone:
    """A visitor whose last socket closed."""

    tenant_id: str
    field: str
    value: dict[str, Any]


class Presence:
    """Count visitors' sockets; say when one comes online or goes offline."""

    def __init__(self, redis: aioredis.Redis, process_id: str, ttl: int = 15) -> None:
        self.redis = redis
        self.process_id = process_id
        self.ttl = ttl
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)
        self._forget = redis.register_script(_FORGET)
        self._restore = redis.register_script(_RESTORE)
        self.held: dict[tuple[str, str], Held] = {}  # (tenant id, field) -> what this process holds

    def _keys(self, tenant_id: str, field: str, process_id: str | None = None) -> list[str]:
        return [f"presence:sockets:{tenant_id}:{field}", f"online_users:{tenant_id}",
                f"presence:entries:{process_id or self.process_id}"]

    async def beat(self) -> bool:
        """Say this process is alive for another `ttl` seconds; False when Redis had lost its
        heartbeat (then what it held may be gone too: `restore`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(f"presence:process:{self.process_id}", "1", ex=self.ttl, get=True)
            pipe.sadd(PROCESSES, self.process_id)
            previous, _ = await pipe.execute()
        return previous is not None

    async def connected(self, tenant_id: str, field: str, value: dict[str, Any], session: dict | None = None) -> bool:
        """Count a visitor's socket (of the session `session`); True when the visitor just came online."""
        held = self.held.setdefault((tenant_id, field), Held(0, value, {}))
        held.count += 1
        if session is not None:
            held.sessions[session["session_id"]] = session
        first = await self._connect(keys=self._keys(tenant_id, field),
                                    args=[self.process_id, field, dumps(value), f"{tenant_id}{SEP}{field}"])
        return bool(first)

    async def disconnected(self, tenant_id: str, field: str) -> Gone | None:
        """Count a socket less; the visitor when it was their last socket anywhere."""
        held = self.held.get((tenant_id, field))
        if held is not None:
            held.count -= 1
            if held.count <= 0:
                del self.held[(tenant_id, field)]
        value = await self._disconnect(keys=self._keys(tenant_id, field),
                                       args=[self.process_id, field, f"{tenant_id}{SEP}{field}"])
        return Gone(tenant_id, field, loads(value)) if value else None

    async def online(self, tenant_id: str) -> list[dict[str, Any]]:
        """Everyone online in a tenant."""
        entries = await self.redis.hgetall(f"online_users:{tenant_id}")
        users = [user_entry(k.decode(), loads(v)) for k, v in entries.items()]
        return sorted(users, key=lambda u: u.get("connectedAt") or "")

    async def dead_processes(self) -> list[str]:
        """Processes listed as holding presence whose heartbeat expired."""
        members = [m.decode() for m in await self.redis.smembers(PROCESSES)]
        if not members:
            return []
        alive = await self.redis.mget([f"presence:process:{m}" for m in members])
        return [m for m, beat in zip(members, alive) if beat is None and m != self.process_id]

    async def clear_process(self, process_id: str) -> list[Gone]:
        """Remove every entry a process held; return the visitors that went offline by it."""
        gone = []
        entries_key = f"presence:entries:{process_id}"
        for member in await self.redis.smembers(entries_key):
            tenant_id, _, field = member.decode().partition(SEP)
            value = await self._forget(keys=self._keys(tenant_id, field, process_id), args=[process_id, field])
            if value:
                gone.append(Gone(tenant_id, field, loads(value)))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(entries_key, f"presence:process:{process_id}")
            pipe.srem(PROCESSES, process_id)
            await pipe.execute()
        return gone

    async def restore(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Write again what this process holds (its socket counts, the visitors' online entries and
        their sessions' `session:{id}`); return the visitors whose online entry was missing."""
        held = list(self.held.items())
        async with self.redis.pipeline(transaction=False) as pipe:
            for (tenant_id, field), entry in held:
                await self._restore(keys=self._keys(tenant_id, field), client=pipe,
                                    args=[self.process_id, field, entry.count, dumps(entry.value), f"{tenant_id}{SEP}{field}"])
                for row in entry.sessions.values():
                    pipe.set(rooms.session_key(row["session_id"]), rooms.session_entry(row), ex=rooms.SESSION_TTL)
            replies = iter(await pipe.execute())
        back = []
        for (tenant_id, field), entry in held:
            if next(replies):
                back.append((tenant_id, field, entry.value))
            for _ in entry.sessions:
                next(replies)
        return back
