"""The presence worker: this process's heartbeat (restoring what it holds when Redis lost it), and the
sweeper of processes that died."""
from __future__ import annotations

import asyncio
import logging

from ..bus import Bus
from ..services.chat import announce_offline, announce_online
from ..services.presence import Presence
from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)
# After a failure the next try comes this soon, then twice as late each time up to the beat's
# interval (never later: a heartbeat that lapses gets this process's visitors swept).
RETRY_FIRST = 0.25
STOP_TIMEOUT = 10.0


class PresenceWorker:
    """Every `ttl / 3` seconds: renew this process's heartbeat, clear processes whose heartbeat expired."""

    def __init__(self, presence: Presence, bus: Bus) -> None:
        self.presence = presence
        self.bus = bus
        self.step = max(presence.ttl / 3, 0.2)
        self.swept = 0
        self.lost = False  # Redis lost this process's presence, not yet restored
        self._task: asyncio.Task | None = None

    async def run_once(self) -> int:
        """Beat once (restoring this process's presence if Redis had lost it), then clear every dead
        process; return how many visitors went offline."""
        if not await self.presence.beat():
            self.lost = True
        if self.lost and self.bus.connected:  # (user_online said before the bus is back would be missed)
            back = await self.presence.restore()
            self.lost = False
            for tenant_id, field, value in back:
                await announce_online(self.bus, tenant_id, field, value)
            log.info("presence: Redis had lost this process's heartbeat; restored %d visitors (%d back online)",
                     len(self.presence.held), len(back))
        offline = 0
        for process_id in await self.presence.dead_processes():
            for gone in await self.presence.clear_process(process_id):
                await announce_offline(self.bus, gone)
                offline += 1
            log.info("presence: cleared the entries of dead process %s", process_id)
        self.swept += offline
        return offline

    async def _run(self) -> None:
        retry = 0.0
        while True:
            try:
                await self.run_once()
                retry = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis trouble: try again soon, never die
                log.warning("presence worker: %s", exc)
                retry = min(max(retry * 2, RETRY_FIRST), self.step)
            await asyncio.sleep(retry or self.step)

    async def start(self) -> None:
        """Beat at once, then keep beating and sweeping in the background."""
        await self.presence.beat()
        self._task = asyncio.create_task(self._run(), name="presence-worker")

    @property
    def running(self) -> bool:
        """True while the loop runs."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop, and clear what this process still holds (its sockets are closed by now)."""
        await cancel_and_wait(self._task)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):  # a wedged Redis must not hang the shutdown
                for gone in await self.presence.clear_process(self.presence.process_id):
                    await announce_offline(self.bus, gone)
        except Exception as exc:
            log.warning("presence: could not clear this process's entries: %s", exc)
