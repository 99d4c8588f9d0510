"""The message write path: writers batching what arrives into one statement per batch (stored by
`batches.py` on each writer's own connection).

`await writer.submit(draft)` returns the stored message once it is committed. Messages are
spread over a few writer tasks by session (one session always goes to the same one, so its
order holds); each takes everything queued (up to `batch_max`) and stores it with one SQL
statement, i.e. one round trip and one transaction: the batch goes over as one JSON
parameter; the statement locks the sessions touched (in session_id order), skips repeated
clientMessageIds, numbers each session's new messages from its last_seq, inserts them (with a
webhook outbox row where its tenant has an endpoint for it) and advances the sessions. Then one
Redis call publishes each message's event to `conversation:{sessionId}`, XADDs its entry to
`meta:webhook_jobs` and refreshes `session:{sessionId}`, sent just after the acks and frames; nobody waits for
its reply (`settled()` does). A repeated clientMessageId resolves to the stored
row (not published again). Redis announces one batch while PostgreSQL stores the next.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable

import aiopg
import psycopg2.errors
import redis.asyncio as aioredis

from ..bus import Bus, Event, rooms
from ..bus.announce import Announcer
from ..errors import ApiError, InternalError, ValidationError
from ..outages import failure
from ..tasks import cancel_and_wait
from . import messages
from .batches import BatchConnection, Draft, Stored, draft_fault

log = logging.getLogger(__name__)

# Stored batches whose announcement may be outstanding at once, per writer: the writer stores the
# next batch without waiting for Redis (announcements leave one after another, in order), and
# waits only when Redis has fallen this far behind.
ANNOUNCING_MAX = 2
# With writer_linger_ms set, a batch whose first message finds fewer than this many queued
# behind it waits that long for more: a batch costs about as much again as its messages, so
# at a steady rate fewer, bigger batches save CPU for a little latency. A queue this long
# already makes a batch worth its cost, and waiting then would only slow a backlog. Nor does
# a batch wait after one this big: a writer storing big batches back to back makes them by
# itself, and when senders send their next message once acked, a linger there would hold up
# all of them (the bench's maximum load) without bringing any message sooner.
LINGER_BELOW = 8
STOPPED = object()


class _Shard:
    """One writer task: its queue, its PostgreSQL connection with the statement prepared on it, and
    its Redis connection (an Announcer's calls must not overlap: one reply is read per call)."""

    def __init__(self, queue_max: int, dsn: str, redis: aioredis.Redis, hook_all: bool) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(queue_max)
        self.task: asyncio.Task | None = None
        self.batches = BatchConnection(dsn, hook_all)
        self.last_batch = 0  # messages in the batch taken before this one
        self.storing_since = 0.0  # time.monotonic() when the batch at PostgreSQL now was sent; 0 when none is
        self.announcing: collections.deque[asyncio.Task] = collections.deque()  # stored batches being published, oldest first
        self.announcer = Announcer(redis)


def _refuse(batch: list[tuple[Draft, asyncio.Future]], error: ApiError) -> None:
    """Fail every sender of a batch that could not be stored (each may retry)."""
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _store_failed(exc: BaseException) -> ApiError:
    """The error the senders of a batch that could not be stored get (SERVICE_UNAVAILABLE for an outage)."""
    return failure(exc, "The message could not be stored; please retry")


class MessageWriter:
    """Store messages in batches, `shards` batches in flight at most; publish after commit."""

    def __init__(self, pool: aiopg.Pool, dsn: str, redis: aioredis.Redis, bus: Bus, *, queue_max: int = 10000,
                 batch_max: int = 500, shards: int = 1, linger: float = 0.0, hook_all: bool = False) -> None:
        self.pool = pool  # for reading back repeated messages
        self.dsn = dsn  # each writer opens its own connection
        self.bus = bus
        self.batch_max = batch_max
        self.linger = linger  # seconds a batch waits for more messages (see LINGER_BELOW)
        self._shards = [_Shard(queue_max, dsn, redis, hook_all) for _ in range(max(1, shards))]
        self.batches = 0
        self.stored = 0
        self.on_batch: Callable[[int, int, float], None] = lambda size, stored, seconds: None  # metrics

    @property
    def running(self) -> bool:
        """True while every writer task runs."""
        return all(shard.task is not None and not shard.task.done() for shard in self._shards)

    def backlog(self) -> tuple[int, float]:
        """Messages queued, and how long the batch at PostgreSQL longest has been there (seconds; 0 if none)."""
        now = time.monotonic()
        return (sum(shard.queue.qsize() for shard in self._shards),
                max((now - shard.storing_since for shard in self._shards if shard.storing_since), default=0.0))

    def start(self) -> None:
        """Start the writer tasks."""
        for n, shard in enumerate(self._shards):
            shard.task = asyncio.create_task(self._run(shard), name=f"message-writer-{n}")

    async def stop(self) -> None:
        """Finish what is queued (10 s at most), then stop and give the connections back."""
        tasks = [shard.task for shard in self._shards if shard.task is not None]
        if not tasks:
            return
        for shard in self._shards:
            await shard.queue.put(STOPPED)
        await asyncio.wait([asyncio.shield(task) for task in tasks], timeout=10)
        for shard in self._shards:
            await cancel_and_wait(shard.task)
            if shard.announcing:
                await asyncio.wait(shard.announcing, timeout=5)
                for task in shard.announcing:
                    await cancel_and_wait(task)
            await shard.batches.drop()
            await shard.announcer.close()

    async def submit(self, draft: Draft) -> Stored:
        """Queue a message (waiting while its queue is full) and return it once committed."""
        shard = self._shards[hash(draft.session_id) % len(self._shards)]
        if shard.task is None or shard.task.done():
            raise InternalError("The message writer is not running")
        future = asyncio.get_running_loop().create_future()
        await shard.queue.put((draft, future))
        return await future

    async def _run(self, shard: _Shard) -> None:
        queue = shard.queue
        while True:
            item = await queue.get()
            if item is STOPPED:
                return
            batch = [item]
            stop = False
            if self.linger and queue.qsize() < LINGER_BELOW and shard.last_batch < LINGER_BELOW:
                await asyncio.sleep(self.linger)
            while len(batch) < self.batch_max and not queue.empty():
                item = queue.get_nowait()
                if item is STOPPED:
                    stop = True
                    break
                batch.append(item)
            shard.last_batch = len(batch)
            live = [(d, f) for d, f in batch if not f.done()]
            if live:
                await self._write(shard, live)
            if stop:
                return

    async def _write(self, shard: _Shard, batch: list[tuple[Draft, asyncio.Future]]) -> None:
        """Store one batch and start publishing it; never raises (failures go to the batch's futures).

        Publishing runs beside the next batch's statement: PostgreSQL stores batch N+1 while
        Redis announces batch N. Batches are announced in the order they were stored, one at
        a time: each announcement waits for the one before it, the writer only for the
        ANNOUNCING_MAX-th before (waiting on each one put the loop's backlog between two
        statements: 0.85 ms of PostgreSQL idle per 1.6 ms batch at maximum load).
        """
        drafts = [d for d, _ in batch]
        started = shard.storing_since = time.monotonic()
        try:
            results, fresh = await shard.batches.store(self.pool, drafts)
        except asyncio.CancelledError as exc:  # stopped before the batch was through
            _refuse(batch, _store_failed(exc))
            raise
        except Exception as exc:
            if not draft_fault(exc):
                log.exception("storing a batch of %d messages failed", len(batch))
                _refuse(batch, _store_failed(exc))
            elif len(batch) > 1:  # one draft spoils its batch: store the halves apart, in order, to find it
                log.info("a batch of %d messages was refused (%r); storing it in halves", len(batch), str(exc))
                half = len(batch) // 2
                await self._write(shard, batch[:half])
                await self._write(shard, batch[half:])
            elif isinstance(exc, psycopg2.DataError):  # a value PostgreSQL cannot hold (NUL in text)
                log.warning("a message of session %r was refused: %r", batch[0][0].session_id, str(exc))
                _refuse(batch, ValidationError("The message holds characters that cannot be stored",
                                               errors={"text": "cannot be stored"}))
            else:
                log.exception("storing a message of session %r failed", batch[0][0].session_id)
                _refuse(batch, _store_failed(exc))
            return
        finally:
            shard.storing_since = 0.0
        self.batches += 1
        self.stored += len(fresh)
        self.on_batch(len(batch), len(fresh), time.monotonic() - started)
        announcing = shard.announcing
        while announcing and announcing[0].done():
            announcing.popleft()
        if len(announcing) >= ANNOUNCING_MAX:
            await asyncio.wait([announcing.popleft()])
        prior = announcing[-1] if announcing else None
        announcing.append(asyncio.create_task(self._publish(shard, batch, results, fresh, prior), name="message-announce"))

    async def _publish(self, shard: _Shard, batch: list[tuple[Draft, asyncio.Future]], results: list[Any],
                       fresh: list[tuple[dict, int | None, Draft]], prior: asyncio.Task | None) -> None:
        """Resolve a stored batch's futures, deliver it to this process's sockets, then announce
        it once `prior` (the batch stored before it) is announced.

        Nobody waits for Redis: its reply would put a round trip, and the loop's backlog behind
        it, on every message's way. Its call leaves two ticks later, once the acks and frames
        are written: sent first, it woke Redis to compete with their readers for the cores
        (2026-11-30, quick A/B at 4,000 msg/s: p99 7.1-7.4 ms with the call first, 5.1-5.5 after).
        """
        events = [messages.message_event(row, self.bus.origin) for row, _, _ in fresh]
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if events:
            # This process's sockets get the events directly (its bus listener skips them), after the
            # waiting senders have run: a sender's ack and the message's frames leave in one write.
            asyncio.get_running_loop().call_soon(self._deliver_local, [event for event, _ in events])
            await asyncio.sleep(0)  # the senders and the local delivery run, and queue their writes
            await asyncio.sleep(0)  # the sockets write them
        if prior is not None and not prior.done():
            await asyncio.wait([prior])
        if not events:
            return
        encoded = [data for _, data in events]
        for attempt in (1, 2):  # the connection may be stale after a Redis restart: once more, on a new one
            try:
                await shard.announcer.announce([(row, outbox_id, draft.session) for row, outbox_id, draft in fresh], encoded)
                return
            except Exception as exc:  # stored but not announced: the reconciler re-adds the jobs
                log.warning("publishing %d stored messages failed (attempt %d): %s", len(fresh), attempt, exc)

    async def settled(self) -> None:
        """Wait until every batch stored so far has been announced on Redis."""
        announcing = [task for shard in self._shards for task in shard.announcing]
        if announcing:
            await asyncio.wait(announcing)

    def _deliver_local(self, events: list[Event]) -> None:
        for event in events:
            self.bus.deliver_local(rooms.conversation(event.session_id), event)
