"""The webhook worker of every process: one consumer group on `meta:webhook_jobs`, retries from
PostgreSQL, the reconciler that re-adds jobs Redis lost, and the stream's trimming.

A job (stream entry) is acknowledged once its deliveries have an outcome recorded in
PostgreSQL (delivered, dead, or pending with its next attempt): from then on the delivery rows
carry it, and every process's poller attempts the due ones. An entry left pending by a dead
consumer is claimed (XAUTOCLAIM) after WEBHOOK_CLAIM_IDLE; a delivery held by a dead worker is
free again after the same time. A job whose stream entry was lost (Redis restarted without
persistence, or the XADD after the commit failed) is re-added by the reconciler after
WEBHOOK_RECONCILE_AFTER. Work is started as tasks, at most WEBHOOK_CONCURRENCY deliveries at
once and at most half of them for one endpoint (a delivery that finds its endpoint's half busy
for a second goes back to PostgreSQL), so a slow receiver holds up neither the chat nor the
other endpoints.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import secrets
import socket
import time
from typing import Any

import aiopg
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..bus.rooms import WEBHOOK_STREAM
from ..services.webhook_delivery import Deliverer
from ..settings import Settings
from ..store import webhooks as store
from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)
GROUP = "webhooks"
READ_BLOCK_MS = 1000  # the loop waits this long for new jobs (less when a retry is due sooner)
IN_FLIGHT_BLOCK_MS = 50  # and at most this long while attempts are in flight (a failed one is due again soon)
# While entries keep coming, reads are this far apart (seconds) and take up to READ_COUNT each: most
# entries are messages nobody has an endpoint for, and reading them one batch at a time (a read and
# an XACK per stored batch) cost the server 30 % of its CPU per message at 4,000 msg/s. A job waits
# at most this much longer for its first attempt.
READ_PACE = 0.05
READ_COUNT = 1000
POLL_INTERVAL = 0.5  # seconds between looks for due retries while jobs keep coming
BUSY_WAIT = 1.0  # a delivery waits this long for a slot of its endpoint here, then is let go
BUSY_DELAY = 0.5  # and is due again after this long
TRIM_INTERVAL = 30.0
TRIM_KEEP_MS = 60_000  # settled entries stay this long (for a look with XRANGE)
RECONCILE_BATCH = 1000
MAX_BACKOFF = 30.0
STOP_TIMEOUT = 5.0


def stream_id(text: bytes | str) -> tuple[int, int]:
    """A stream entry id as a comparable (ms, seq)."""
    ms, _, seq = (text.decode() if isinstance(text, bytes) else text).partition("-")
    return int(ms), int(seq or 0)


class WebhookWorker:
    """Deliver webhook jobs; `run_once` does one round to the end (tests), `start` loops in the background."""

    def __init__(self, pool: aiopg.Pool, redis: aioredis.Redis, settings: Settings, consumer: str | None = None) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        self.deliverer = Deliverer(pool, redis, settings)
        # host-pid-random: XINFO CONSUMERS shows whose entries are pending
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.capacity = settings.webhook_concurrency
        self.per_endpoint = max(1, self.capacity // 2)
        self.active = 0  # deliveries waiting for a slot or being attempted, and entries being fanned out
        self.attempted = 0
        self.last_read = 0  # entries the last round read
        self._slots: dict[int | None, asyncio.Semaphore] = {}  # endpoint id (None: global) -> its attempts here
        self._holders: collections.Counter = collections.Counter()  # endpoint id -> deliveries waiting or attempted
        self._tasks: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        # when each periodic step last ran; the reconciler and the trim first run one period after the start
        self._last = {"claim": 0.0, "poll": 0.0, "reconcile": time.monotonic(), "trim": time.monotonic()}

    # The stream -----------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless it exists; from the stream's start, so
        nothing added before it is skipped (a job already settled is skipped by its outbox row)."""
        try:
            await self.redis.xgroup_create(WEBHOOK_STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _group_call(self, call: Any) -> Any:
        """Run a group command; on NOGROUP (Redis restarted or was flushed) make the group and run it again."""
        try:
            return await call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        log.warning("webhooks: no consumer group (new, or Redis restarted or was flushed): making it")
        await self.ensure_group()
        self._last["reconcile"] = 0.0  # jobs may have been lost with it: reconcile at the next turn
        return await call()

    async def read(self, count: int, block_ms: int = 0) -> list[tuple[bytes, dict]]:
        """Up to `count` new entries for this consumer (waiting up to `block_ms` for one)."""
        reply = await self._group_call(lambda: self.redis.xreadgroup(
            GROUP, self.consumer, {WEBHOOK_STREAM: ">"}, count=count, block=block_ms or None))
        return [entry for _, entries in reply for entry in entries] if reply else []

    async def claim(self, count: int) -> list[tuple[bytes, dict]]:
        """Up to `count` entries other consumers left pending for WEBHOOK_CLAIM_IDLE, now this one's."""
        idle_ms = int(self.settings.webhook_claim_idle * 1000)
        reply = await self._group_call(lambda: self.redis.xautoclaim(
            WEBHOOK_STREAM, GROUP, self.consumer, idle_ms, start_id="0-0", count=count))
        return [entry for entry in reply[1] if entry[1] is not None]

    # Rounds ---------------------------------------------------------------------------------

    async def _round(self, block_ms: int, everything: bool) -> list[asyncio.Task]:
        """Start the work one round finds: claimed and new jobs, then due retries. `everything`: claim and
        poll whatever the time (tests)."""
        now = time.monotonic()
        started: list[asyncio.Task] = []
        free = self.capacity - self.active
        if free <= 0:
            return started
        entries: list[tuple[bytes, dict]] = []
        if everything or now - self._last["claim"] >= self.settings.webhook_claim_idle / 2:
            self._last["claim"] = now
            entries += await self.claim(free)
        if len(entries) < free:
            entries += await self.read(max(free, READ_COUNT) - len(entries), block_ms)
        self.last_read = len(entries)
        if entries:
            self.active += len(entries)  # until their deliveries are made (they count themselves then)
            started.append(self._spawn(self._handle(entries)))
        free = self.capacity - self.active
        now = time.monotonic()
        if free > 0 and (everything or not entries or now - self._last["poll"] >= POLL_INTERVAL
                         or now >= self.deliverer.next_due):
            self._last["poll"], self.deliverer.next_due = now, float("inf")
            async with self.pool.acquire() as conn:
                due = await store.take_due(conn, free, self.deliverer.lease)
            started += [self._spawn(self._deliver(job)) for job in due]
        return started

    async def run_once(self) -> int:
        """One round to the end: claim, read, fan out and attempt new jobs, attempt due retries; return the
        number of delivery attempts made."""
        before = self.attempted
        tasks = await self._round(0, everything=True)
        if tasks:
            await asyncio.gather(*tasks)
        return self.attempted - before

    def _spawn(self, work: Any) -> asyncio.Task:
        task = asyncio.create_task(work, name="webhook-delivery")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, entries: list[tuple[bytes, dict]]) -> None:
        """Fan the entries' jobs out into deliveries, attempt them, then acknowledge the entries. On
        trouble the entries stay pending, and are claimed again after WEBHOOK_CLAIM_IDLE."""
        ids = []
        for _, fields in entries:
            outbox_id = fields.get(b"outbox_id")  # none: a message nobody has an endpoint for
            if outbox_id is None:
                continue
            try:
                ids.append(int(outbox_id))
            except ValueError:
                log.warning("webhooks: a job entry with a bad outbox id: %r", fields)
        try:
            jobs: list[dict] = []
            try:
                if ids:
                    async with self.pool.acquire() as conn:
                        jobs = await store.fan_out(conn, ids, bool(self.settings.webhook_url), self.deliverer.lease)
            finally:
                self.active -= len(entries)
            await asyncio.gather(*(self._deliver(job) for job in jobs))
            await self.redis.xack(WEBHOOK_STREAM, GROUP, *(entry_id for entry_id, _ in entries))
        except Exception as exc:
            log.warning("webhooks: %d jobs left for later: %s", len(entries), exc)

    async def _deliver(self, job: dict) -> None:
        """Attempt one held delivery once its endpoint has a free slot here; after BUSY_WAIT without one
        (a slow endpoint using all its slots) let go of it, due again after BUSY_DELAY."""
        endpoint = job["webhook_id"]
        slots = self._slots.get(endpoint)
        if slots is None:
            slots = self._slots[endpoint] = asyncio.Semaphore(self.per_endpoint)
        self._holders[endpoint] += 1
        self.active += 1
        try:
            try:
                await asyncio.wait_for(slots.acquire(), BUSY_WAIT)
            except asyncio.TimeoutError:
                async with self.pool.acquire() as conn:
                    await store.put_back(conn, job["id"], BUSY_DELAY)
                return
            try:
                await self.deliverer.attempt(job)
                self.attempted += 1
            finally:
                slots.release()
        except Exception as exc:  # PostgreSQL trouble: the hold runs out, and the delivery is attempted again
            log.warning("webhooks: delivery %s: %s", job["id"], exc)
        finally:
            self.active -= 1
            self._holders[endpoint] -= 1
            if not self._holders[endpoint]:
                del self._holders[endpoint], self._slots[endpoint]

    # Housekeeping ---------------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Re-add jobs that are still pending WEBHOOK_RECONCILE_AFTER after they were written or last
        added (lost with Redis, or never announced); return how many."""
        async with self.pool.acquire() as conn:
            rows = await store.stale_jobs(conn, self.settings.webhook_reconcile_after, RECONCILE_BATCH)
        if rows:
            async with self.redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    pipe.xadd(WEBHOOK_STREAM, {"outbox_id": row["id"], "message_id": row["message_id"] or "",
                                               "tenant_id": row["tenant_id"]})
                await pipe.execute()
            log.info("webhooks: re-added %d jobs to %s", len(rows), WEBHOOK_STREAM)
        return len(rows)

    async def trim(self, keep_ms: int = TRIM_KEEP_MS) -> None:
        """Drop the entries every group has settled (acknowledged), keeping the last `keep_ms` of them."""
        try:
            groups = await self.redis.xinfo_groups(WEBHOOK_STREAM)
        except ResponseError:  # no stream yet
            return
        if not groups:
            return
        bound = (int(time.time() * 1000) - keep_ms, 0)
        for group in groups:
            pending = await self.redis.xpending(WEBHOOK_STREAM, group["name"])
            if pending["pending"]:  # its oldest unsettled entry stays
                bound = min(bound, stream_id(pending["min"]))
            else:  # everything it read is settled; what follows it is unread
                ms, seq = stream_id(group["last-delivered-id"])
                bound = min(bound, (ms, seq + 1))
        await self.redis.xtrim(WEBHOOK_STREAM, minid=f"{bound[0]}-{bound[1]}", approximate=False)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last["reconcile"] >= max(self.settings.webhook_reconcile_after / 2, 0.1):
            self._last["reconcile"] = now
            await self.reconcile()
        if now - self._last["trim"] >= TRIM_INTERVAL:
            self._last["trim"] = now
            await self.trim()

    # The loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self.active >= self.capacity and self._tasks:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                await self._housekeeping()
                # wait for new jobs until the soonest retry scheduled here is due (at most READ_BLOCK_MS);
                # while attempts are in flight, one may fail and schedule a retry sooner than that
                due_ms = (self.deliverer.next_due - time.monotonic()) * 1000
                block_ms = min(READ_BLOCK_MS, due_ms, IN_FLIGHT_BLOCK_MS if self.active else READ_BLOCK_MS)
                started = time.monotonic()
                await self._round(max(1, int(block_ms)), everything=False)
                backoff = 0.1
                if self.last_read:  # entries keep coming: let them gather for the next read
                    await asyncio.sleep(max(0.0, READ_PACE - (time.monotonic() - started)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or PostgreSQL trouble: try again later, never die
                log.warning("webhook worker: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def start(self) -> None:
        """Make the group, then deliver in the background."""
        try:
            await self.ensure_group()
        except Exception as exc:  # Redis down at start: the loop makes it on NOGROUP
            log.warning("webhooks: could not make the consumer group yet: %s", exc)
        self._task = asyncio.create_task(self._run(), name="webhook-worker")

    async def stop(self) -> None:
        """Stop reading; let attempts under way finish for a moment, then cancel them (their holds run out
        and another process attempts them again)."""
        await cancel_and_wait(self._task)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_TIMEOUT)
        for task in list(self._tasks):
            await cancel_and_wait(task)
        await self.deliverer.close()
