"""Helpers of the webhook tests: a real receiver (an aiohttp server on a free loopback port that records
every POST and answers as told: a list of statuses, a redirect, or never), an app with a tenant, endpoints."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from aiohttp import web

from amoiq_chat.appkeys import DB, SETTINGS, WRITER
from amoiq_chat.services import sessions
from amoiq_chat.services.batches import Draft

from .chat_fixtures import make_tenant, session_id
from .conftest import free_port
from .factories import bearer, expect

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


# Tests' timings: retries after 0.1 s and 0.3 s, 1 s timeouts, jobs claimed after 1.5 s idle.
FAST = {"webhook_retry_schedule": (0.1, 0.3), "webhook_timeout": 1.0, "webhook_claim_idle": 1.5,
        "webhook_reconcile_after": 0.5}


@pytest.fixture(autouse=True)
def settled_before(db_conn):
    """Each webhook test starts with no job or delivery of an earlier test still due (the test database is
    shared by the whole run, and a worker takes every due one): those are marked settled."""
    with db_conn.cursor() as cur:
        cur.execute("UPDATE webhook_deliveries SET status = 'dead', last_error = 'left by an earlier test'"
                    " WHERE status = 'pending'")
        cur.execute("UPDATE webhook_outbox SET status = 'delivered' WHERE status IN ('pending', 'sending')")


@pytest.fixture
async def receiver():
    """Start receivers (`await receiver(answers)`); all are stopped after the test."""
    made = []

    async def start(answers=None):
        rec, runner = await start_receiver(answers)
        made.append(runner)
        return rec

    yield start
    for runner in made:
        await runner.cleanup()


async def chat_app(aiohttp_client, make_app, redis_url, *, background=False, **changes):
    """A client over an app on its own Redis (worker driven by the test unless `background`), and a tenant
    with one session."""
    client = await aiohttp_client(make_app(redis_url=redis_url, webhook_delivery=background,
                                           **{**FAST, **changes}))
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=0)
    sid = session_id()
    async with client.app[DB].acquire() as conn:
        await sessions.ensure_session(conn, tenant.id, sid, site_key=tenant.site_key)
    return client, tenant, sid


async def add_endpoint(client, tenant, url, **fields):
    """POST /api/webhooks as the tenant's admin; the endpoint as answered (with its secret)."""
    body = await expect(await client.post("/api/webhooks", json={"url": url, **fields},
                                          headers=bearer(tenant.admin_token)), 201)
    return body["data"]["webhook"]


async def say(app, tenant, sid, text, sender="visitor"):
    """Store a message through the writer and wait until its job is on the stream."""
    stored = await app[WRITER].submit(Draft(tenant.id, sid, sender, text))
    await app[WRITER].settled()
    return stored


async def deliveries(client, tenant, hook_id):
    """The deliveries route's answer."""
    body = await expect(await client.get(f"/api/webhooks/{hook_id}/deliveries", headers=bearer(tenant.admin_token)), 200)
    return body["data"]["deliveries"]
