"""The waiting queue's shared state in Redis: changes, the figures last pushed, the lock, online agents.

Per tenant, `support:queue:{tenantId}` holds `changes` (counted up by whoever changes the queue,
on any process), `done` (the count the last recalculation saw) and `at` (when it ran). The
recalculator (workers/queue.py) holds `support:queue:lock:{tenantId}` while it computes, so one
process does the work of a change and every visitor is told figures from one snapshot;
`support:queue:figures:{tenantId}` keeps what each waiting visitor was last told ("position
wait"), so only changed figures are pushed and the REST routes answer the same figures.
`support:agents:{tenantId}` is a sorted set of `{agentId}:{processId}` members scored with the
time their entry expires: an agent is online while any process holds one of their sockets and
renews its entry (a process that dies stops renewing).
"""
from __future__ import annotations

import asyncio
import math
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from ..bus import FOR_VISITORS, encode_event, rooms
from ..jsonutil import dumps, now_iso

DIRTY = "support:queue:dirty"  # tenants with changes not yet recalculated
DEFAULT_ACCEPT_SECONDS = 120.0  # the mean wait per place in the queue, before any chat was accepted
LOCK_MS = 15000  # a recalculator that died frees its tenant after this long
AGENT_TTL = 15.0  # an agent entry not renewed for this long is offline

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Record that the figures of change count ARGV[1] are out; 1 when no newer change came meanwhile
# (then the queue is clean: out of the dirty set, its members flag cleared).
_FINISH = """
redis.call('HSET', KEYS[1], 'done', ARGV[1], 'at', ARGV[2])
local changes = redis.call('HGET', KEYS[1], 'changes')
if changes == ARGV[1] or changes == false then
  redis.call('HDEL', KEYS[1], 'members')
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


def state_key(tenant_id: str) -> str:
    """The tenant's change counter, last recalculated count and time."""
    return f"support:queue:{tenant_id}"


def figures_key(tenant_id: str) -> str:
    """What each waiting visitor of the tenant was last told."""
    return f"support:queue:figures:{tenant_id}"


def estimated_wait(position: int, online_agents: int, accept_seconds: float | None) -> int:
    """Minutes until a person answers: the place in the queue times the recent mean time to accept,
    shared by the online agents (at least one is assumed, and at least a minute is said)."""
    per_place = accept_seconds if accept_seconds and accept_seconds > 0 else DEFAULT_ACCEPT_SECONDS
    return max(1, math.ceil(position * per_place / 60 / max(1, online_agents)))


def queue_update(session_id: str, position: int, wait: int) -> dict:
    """The `queue_update` frame of a waiting visitor."""
    return {"type": "queue_update", "sessionId": session_id, "position": position, "estimatedWait": wait,
            "timestamp": now_iso()}


@dataclass(frozen=True)
class QueueState:
    """A tenant's change count, the count last recalculated, when, and whether sessions joined or left."""

    changes: int
    done: int
    at: float
    members: bool = False


class QueueBoard:
    """This process's view of the queues' shared state, and its agents' sockets."""

    def __init__(self, redis: aioredis.Redis, process_id: str) -> None:
        self.redis = redis
        self.process_id = process_id
        self.wake = asyncio.Event()  # set on every local change: the recalculator runs at once
        self._agents: dict[tuple[str, int], int] = {}  # (tenant, agent) -> this process's sockets
        self._unlock = redis.register_script(_UNLOCK)
        self._finish = redis.register_script(_FINISH)

    async def changed(self, tenant_id: str, members: bool = False) -> None:
        """Count a change of the tenant's queue or of its agents (`members`: a session joined or left
        the queue, so the staff get the new list) and wake the recalculator."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(state_key(tenant_id), "changes", 1)
            if members:
                pipe.hset(state_key(tenant_id), "members", 1)
            pipe.sadd(DIRTY, tenant_id)
            await pipe.execute()
        self.wake.set()

    async def dirty(self) -> list[str]:
        """Tenants whose queue changed since it was last recalculated."""
        return [m.decode() for m in await self.redis.smembers(DIRTY)]

    async def state(self, tenant_id: str) -> QueueState:
        """The tenant's change count, last recalculated count and time."""
        changes, done, at, members = await self.redis.hmget(state_key(tenant_id), "changes", "done", "at", "members")
        return QueueState(int(changes or 0), int(done or 0), float(at or 0), bool(members))

    async def lock(self, tenant_id: str) -> str | None:
        """Take the tenant's recalculation lock; its token, or None when another process holds it."""
        token = secrets.token_hex(8)
        taken = await self.redis.set(f"support:queue:lock:{tenant_id}", token, nx=True, px=LOCK_MS)
        return token if taken else None

    async def unlock(self, tenant_id: str, token: str) -> None:
        """Give the lock back (only if it is still ours)."""
        await self._unlock(keys=[f"support:queue:lock:{tenant_id}"], args=[token])

    async def finish(self, tenant_id: str, changes: int) -> bool:
        """Record that change `changes` is recalculated; False when a newer change came meanwhile."""
        return bool(await self._finish(keys=[state_key(tenant_id), DIRTY], args=[changes, time.time(), tenant_id]))

    async def figures(self, tenant_id: str) -> dict[str, tuple[int, int]]:
        """What each waiting visitor was last told: session id -> (position, estimated wait)."""
        raw = await self.redis.hgetall(figures_key(tenant_id))
        return {k.decode(): tuple(int(x) for x in v.split()) for k, v in raw.items()}  # type: ignore[misc]

    async def publish(self, tenant_id: str, new: dict[str, tuple[int, int]], gone: list[str]) -> None:
        """Push `queue_update` to each visitor in `new` (wherever their sockets are), record their
        figures and forget those of sessions that left the queue: one round trip."""
        if not new and not gone:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id, (position, wait) in new.items():
                frame = dumps(queue_update(session_id, position, wait))
                pipe.publish(rooms.conversation(session_id), encode_event([(FOR_VISITORS, frame)]))
            if new:
                pipe.hset(figures_key(tenant_id), mapping={k: f"{p} {w}" for k, (p, w) in new.items()})
            if gone:
                pipe.hdel(figures_key(tenant_id), *gone)
            await pipe.execute()

    # Agents' availability -------------------------------------------------------------------

    def _member(self, agent_id: int) -> str:
        return f"{agent_id}:{self.process_id}"

    async def agent_connected(self, tenant_id: str, agent_id: int) -> None:
        """Count an agent socket of this process; the agent is online (and the queue may move)."""
        key = (tenant_id, agent_id)
        self._agents[key] = self._agents.get(key, 0) + 1
        await self.redis.zadd(f"support:agents:{tenant_id}", {self._member(agent_id): time.time() + AGENT_TTL})
        await self.changed(tenant_id)

    async def agent_disconnected(self, tenant_id: str, agent_id: int) -> None:
        """Count one agent socket less; at the last one here, this process stops vouching for them."""
        key = (tenant_id, agent_id)
        left = self._agents.get(key, 0) - 1
        if left > 0:
            self._agents[key] = left
            return
        self._agents.pop(key, None)
        await self.redis.zrem(f"support:agents:{tenant_id}", self._member(agent_id))
        await self.changed(tenant_id)

    async def renew_agents(self) -> None:
        """Renew the entries of the agents whose sockets this process holds."""
        if not self._agents:
            return
        expires = time.time() + AGENT_TTL
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant_id, agent_id in list(self._agents):
                pipe.zadd(f"support:agents:{tenant_id}", {self._member(agent_id): expires})
            await pipe.execute()

    async def forget_agents(self) -> None:
        """Drop this process's entries (on shutdown)."""
        for tenant_id, agent_id in list(self._agents):
            await self.redis.zrem(f"support:agents:{tenant_id}", self._member(agent_id))
        self._agents.clear()

    async def online_agents(self, tenant_id: str) -> list[int]:
        """Ids of the tenant's agents with a socket open on a live process."""
        key = f"support:agents:{tenant_id}"
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zrangebyscore(key, now, "+inf")
            _, members = await pipe.execute()
        return sorted({int(m.decode().partition(":")[0]) for m in members})
