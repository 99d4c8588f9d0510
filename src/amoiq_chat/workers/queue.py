"""The queue-position recalculator: assigns (in auto mode) and pushes each waiting visitor's place.

It runs at once when this process changes a queue (the board's `wake`) and every `step`
seconds otherwise; a tenant is recalculated when its change count moved or `refresh` seconds
passed (estimated waits follow the agents online). One process at a time holds a tenant's
lock, so a change is worked once, whichever process sees it first; the others find it done.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..credentials import AGENT
from ..errors import ApiError
from ..services.chat import push_waiting_sessions
from ..services.queue import QueueState
from ..services.support import Support
from ..store import support as store
from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)
MAX_BACKOFF = 30.0
BUSY_RETRY = 0.05  # another process held a tenant's lock: look again this soon


class QueueWorker:
    """Keeps every waiting visitor's `queue_update` and every agent's `waiting_sessions` current."""

    def __init__(self, support: Support, *, step: float = 1.0, refresh: float = 5.0) -> None:
        self.support = support
        self.board = support.board
        self.step = step
        self.refresh = refresh
        self.busy = False  # a tenant was locked by another process during the last run
        self.recalculations = 0
        self.pushed = 0  # queue_update frames published
        self.cpu_seconds = 0.0  # this process's CPU time spent recalculating
        self._task: asyncio.Task | None = None

    async def run_once(self) -> int:
        """Renew this process's agents, then recalculate every tenant that is due; return how many were."""
        self.busy = False
        await self.board.renew_agents()
        async with self.support.pool.acquire() as conn:
            tenants = set(await store.waiting_tenants(conn))
        tenants.update(await self.board.dirty())
        done = 0
        for tenant_id in sorted(tenants):
            try:
                done += await self.recalculate(tenant_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # one tenant's trouble never stops the others'
                log.exception("recalculating the queue of %s failed", tenant_id)
        return done

    async def recalculate(self, tenant_id: str, force: bool = False) -> bool:
        """Assign (auto mode) and push the tenant's changed figures, if due and no other process is at it."""
        if not force and not self._due(await self.board.state(tenant_id)):
            return False
        token = await self.board.lock(tenant_id)
        if token is None:
            self.busy = True
            return False
        try:
            state = await self.board.state(tenant_id)  # another process may have done it meanwhile
            if not force and not self._due(state):
                return False
            while True:
                changes = state.changes
                started = time.process_time()
                await self._assign(tenant_id)
                await self._push(tenant_id, state.members)
                self.cpu_seconds += time.process_time() - started
                self.recalculations += 1
                if await self.board.finish(tenant_id, changes):
                    return True
                state = await self.board.state(tenant_id)  # changed meanwhile: once more
        finally:
            await self.board.unlock(tenant_id, token)

    def _due(self, state: QueueState) -> bool:
        """True when the queue changed since it was last recalculated, or `refresh` seconds passed."""
        return state.changes != state.done or time.time() - state.at >= self.refresh

    async def _push(self, tenant_id: str, members: bool) -> None:
        """Tell the visitors whose place or wait changed, and the staff when the queue's members did."""
        async with self.support.pool.acquire() as conn:
            snapshot = await self.support.snapshot(conn, tenant_id)
        told = await self.board.figures(tenant_id)
        new = {sid: figures for sid, figures in snapshot.figures.items() if told.get(sid) != figures}
        gone = [sid for sid in told if sid not in snapshot.figures]
        await self.board.publish(tenant_id, new, gone)
        self.pushed += len(new)
        if members or gone or any(sid not in told for sid in new):
            await push_waiting_sessions(self.support.pool, self.support.bus, tenant_id)

    async def _assign(self, tenant_id: str) -> None:
        """Auto mode: give the head of the queue to the online agent with the fewest chats under their limit."""
        async with self.support.pool.acquire() as conn:
            settings = await store.queue_settings(conn, tenant_id)
            if settings is None or settings["assignment"] != "auto":
                return
            online = await self.board.online_agents(tenant_id)
            if not online:
                return
            agents = await store.agent_loads(conn, tenant_id, online)
            waiting = await store.queue(conn, tenant_id)
        for session in waiting:
            free = [a for a in agents if a["active"] < a["max_concurrent_chats"]]
            if not free:
                return
            agent = min(free, key=lambda a: (a["active"], a["id"]))
            try:
                await self.support.accept(tenant_id, session["session_id"],
                                          {"id": agent["id"], "name": agent["full_name"], "role": AGENT})
            except ApiError as exc:  # taken by hand or closed meanwhile
                log.info("auto assignment of %s: %s", session["session_id"], exc.message)
                continue
            agent["active"] += 1

    async def _run(self) -> None:
        backoff = self.step
        while True:
            self.board.wake.clear()
            try:
                await self.run_once()
                backoff = BUSY_RETRY if self.busy else self.step
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL or Redis trouble: try again later, never die
                log.warning("queue worker: %s", exc)
                backoff = min(max(backoff, self.step) * 2, MAX_BACKOFF)
            try:
                await asyncio.wait_for(self.board.wake.wait(), backoff)
            except asyncio.TimeoutError:
                pass

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self._run(), name="queue-worker")

    async def stop(self) -> None:
        """Stop, and stop vouching for this process's agents."""
        await cancel_and_wait(self._task)
        try:
            async with asyncio.timeout(5):
                await self.board.forget_agents()
        except Exception as exc:
            log.warning("queue worker: could not clear this process's agents: %s", exc)
