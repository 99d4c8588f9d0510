"""Ping/pong for every socket of the process from one task: heartbeats drop dead peers (SPEC section 6).

aiohttp's own heartbeat arms two timers per socket (the next ping, the pong's deadline), ~0.5 KiB
each socket. Here one sweep every half interval does the same for all of them: a socket that
sent nothing for `interval` seconds gets a ping, and one that sent nothing since its ping (no
pong, no frame) by the next sweep is aborted. A dead peer is dropped within two intervals.
"""
from __future__ import annotations

import asyncio
import logging

from ..tasks import cancel_and_wait
from .transport import Socket

log = logging.getLogger(__name__)

CHUNK = 500  # sockets per loop tick in a sweep: thousands of sockets do not stall the loop at once


class Heartbeat:
    """The process's ping sweeper over its open sockets."""

    def __init__(self, sockets: set[Socket], interval: float) -> None:
        self.sockets = sockets
        self.interval = interval
        self.dropped = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Sweep every half interval in the background."""
        self._task = asyncio.create_task(self._run(), name="ws-heartbeat")

    @property
    def running(self) -> bool:
        """True while the loop runs."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop sweeping."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval / 2)
            try:
                await self.sweep()
            except Exception:  # a sweep never takes the sweeper down
                log.exception("heartbeat sweep failed")

    async def sweep(self) -> int:
        """Abort sockets that did not answer their ping, ping the quiet ones; return how many were aborted."""
        loop = asyncio.get_running_loop()
        aborted = 0
        for n, conn in enumerate(list(self.sockets)):
            if n and n % CHUNK == 0:
                await asyncio.sleep(0)
            now = loop.time()
            if conn.pinged_at and conn.seen < conn.pinged_at:
                log.info("socket %s did not answer its ping in %.0f s; dropping it", conn.id, now - conn.pinged_at)
                conn.abort()
                aborted += 1
            elif now - conn.seen >= self.interval:
                conn.ping(now)
            else:
                conn.pinged_at = 0.0
        self.dropped += aborted
        return aborted
