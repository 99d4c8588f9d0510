"""The presence worker: this process's heartbeat, and the sweeper of processes that died."""
from __future__ import annotations

import asyncio
import logging

from ..bus import Bus
from ..services.chat import announce_offline
from ..services.presence import Presence
from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)
MAX_BACKOFF = 30.0
STOP_TIMEOUT = 10.0


class PresenceWorker:
    """Every `ttl / 3` seconds: renew this process's heartbeat, clear processes whose heartbeat expired."""

    def __init__(self, presence: Presence, bus: Bus) -> None:
        self.presence = presence
        self.bus = bus
        self.step = max(presence.ttl / 3, 0.2)
        self.swept = 0
        self._task: asyncio.Task | None = None

    async def run_once(self) -> int:
        """Beat once, then clear every dead process; return how many visitors went offline."""
        await self.presence.beat()
        offline = 0
        for process_id in await self.presence.dead_processes():
            for gone in await self.presence.clear_process(process_id):
                await announce_offline(self.bus, gone)
                offline += 1
            log.info("presence: cleared the entries of dead process %s", process_id)
        self.swept += offline
        return offline

    async def _run(self) -> None:
        backoff = self.step
        while True:
            try:
                await self.run_once()
                backoff = self.step
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis trouble: try again later, never die
                log.warning("presence worker: %s", exc)
                backoff = min(backoff * 2, MAX_BACKOFF)
            await asyncio.sleep(backoff)

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
