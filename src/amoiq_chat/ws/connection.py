"""One socket as the handlers see it: whose it is, its conversations (the sequencer), its frame budget."""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import observe
from ..appkeys import HUB, METRICS, REPLAY, SETTINGS, SOCKETS
from .sequencer import Sequencer


class Connection(Sequencer):
    """A visitor's or a staff member's socket, and what this process knows about it."""

    __slots__ = ("app", "tenant_id", "session_id", "session", "origin", "since", "user_id", "presence_field",
                 "staff", "limit", "_window", "_count", "_rejected", "_strike")

    def __init__(self, app: web.Application, ws: web.WebSocketResponse, audience: str) -> None:
        settings = app[SETTINGS]
        super().__init__(ws, audience, app[REPLAY], app[HUB], send_buffer=settings.ws_send_buffer,
                         queue_max=settings.ws_send_queue, sent=app[METRICS].frames_out_tally)
        self.app = app
        self.tenant_id: str | None = None
        self.session_id: str | None = None  # visitor sockets: the path's session
        self.session: dict | None = None  # visitor sockets, once joined: the session row
        self.origin: str | None = None  # visitor sockets: the handshake's Origin header
        self.since: int | None = None  # visitor sockets: the URL's ?since=
        self.user_id: str | None = None
        self.presence_field: str | None = None
        self.staff: dict[str, Any] | None = None  # staff sockets: id, role, name
        self.limit = settings.rate_limit_ws
        self._window = 0.0
        self._count = 0
        self._rejected = 0
        self._strike = False  # the window before this one went over the limit too

    def start(self, request: web.Request) -> None:
        """Send over this (prepared) socket from now on; the heartbeat looks after it."""
        super().start(request)
        self.app[SOCKETS].add(self)
        observe.socket_opened(self)

    async def stop(self) -> None:
        """Forget the socket, then stop it (rooms left, queued work finished or cancelled)."""
        self.app[SOCKETS].discard(self)
        await super().stop()
        observe.socket_closed(self)

    def over_limit(self, now: float) -> bool:
        """Count a frame (of any kind) received at loop time `now`; True when it exceeds the rate (refused)."""
        if self._count_one(now):
            return False
        self._rejected += 1
        return True

    @property
    def abusive(self) -> bool:
        """True in a second window in a row over the limit (then the socket is closed with 1008)."""
        return self._strike and self._rejected > 0

    async def spend_page(self) -> None:
        """A replay page counts as a frame: past the budget, the next page waits for the next window."""
        loop = asyncio.get_running_loop()
        if not self._count_one(loop.time()):
            await asyncio.sleep(max(0.0, self._window + self.limit.seconds - loop.time()))

    def _count_one(self, now: float) -> bool:
        """Count one frame in the current window (a new one when it ended); True while within the limit."""
        seconds = self.limit.seconds
        if now - self._window >= seconds:
            # A window over the limit right after another one is sustained abuse; one burst is not.
            self._strike = self._rejected > 0 and now - self._window < 2 * seconds
            self._window, self._count, self._rejected = now, 0, 0
        self._count += 1
        return self._count <= self.limit.count
