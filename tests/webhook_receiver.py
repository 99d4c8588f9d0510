"""A real webhook receiver for tests: an aiohttp server on a free loopback port that records every
POST and answers as told (a list of statuses, a redirect, or never)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from .conftest import free_port

HANG = "hang"  # an answer that never comes


@dataclass
class Received:
    """One POST as the receiver got it."""

    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


@dataclass
class Receiver:
    """Answers POST / with `answers` in turn (the last one repeats); records what it got."""

    answers: list[Any] = field(default_factory=lambda: [200])
    got: list[Received] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # added to every answer
    url: str = ""
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, then answer as told."""
        self.got.append(Received(dict(request.headers), await request.read(), time.monotonic()))
        async with self._arrived:
            self._arrived.notify_all()
        answer = self.answers[min(len(self.got), len(self.answers)) - 1]
        if answer == HANG:
            await asyncio.Event().wait()
        if isinstance(answer, tuple):  # (status, extra headers)
            return web.Response(status=answer[0], headers={**self.headers, **answer[1]}, text="answered")
        return web.Response(status=answer, headers=self.headers, text="answered")

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` POSTs have arrived (fails the test after `timeout`)."""
        return await self.wait_until(lambda got: len(got) >= count, timeout)

    async def wait_until(self, done: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        """Wait until `done(what arrived)` holds (fails the test after `timeout`)."""
        async with asyncio.timeout(timeout):
            async with self._arrived:
                await self._arrived.wait_for(lambda: done(self.got))
        return self.got


async def start_receiver(answers: list[Any] | None = None) -> tuple[Receiver, web.AppRunner]:
    """A receiver serving on 127.0.0.1 (its `url`), and its runner to clean up."""
    receiver = Receiver(answers or [200])
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return receiver, runner
