"""The message write path: writers batching what arrives into one statement per batch.

`await writer.submit(draft)` returns the stored message once it is committed. Messages are
spread over a few writer tasks by session (one session always goes to the same one, so its
order holds); each takes everything queued (up to `batch_max`) and stores it with one SQL
statement, i.e. one round trip and one transaction: the batch goes over as one JSON
parameter; the statement locks the sessions touched (in session_id order), skips repeated
clientMessageIds, numbers each session's new messages from its last_seq, inserts them with
their webhook outbox rows and advances the sessions. Then one Redis call publishes each
message's event to `conversation:{sessionId}`, XADDs its webhook job to `meta:webhook_jobs`
and refreshes `session:{sessionId}`, sent just after the acks and frames; nobody waits for
its reply (`settled()` does). A repeated clientMessageId resolves to the stored
row (not published again). Redis announces one batch while PostgreSQL stores the next.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiopg
import psycopg2.errors
import psycopg2.extensions
import redis.asyncio as aioredis

from .. import db
from ..bus import Bus, Event, rooms
from ..bus.announce import Announcer
from ..errors import ApiError, InternalError, SessionNotFound, ValidationError
from ..jsonutil import dumps_str, iso
from ..outages import failure, is_outage
from ..tasks import cancel_and_wait
from ..store import messages as store
from . import messages

log = logging.getLogger(__name__)

# A batch that met another writer (two processes, one clientMessageId or a lock cycle) is retried.
RETRIES = 3
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
RETRYABLE = (psycopg2.errors.UniqueViolation, psycopg2.errors.DeadlockDetected,
             psycopg2.errors.SerializationFailure)
CONNECT_TIMEOUT = 10.0
WRITER_APPLICATION_NAME = f"{db.APPLICATION_NAME} writer"  # its connections in pg_stat_activity
REPREPARE = 30.0  # seconds between two PREPAREs of the batch statement on one connection
STOPPED = object()


@dataclass
class Draft:
    """A message to store; `session` (the session's row, when the caller has it) refreshes session:{id}."""

    tenant_id: str
    session_id: str
    sender_type: str  # visitor | agent | ai | system
    text: str
    sender_id: str | None = None
    user_id: str | None = None
    client_message_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    message_type: str = "text"
    session: dict | None = None


@dataclass
class Stored:
    """A committed message row, and whether it was stored earlier (a repeated clientMessageId)."""

    row: dict
    duplicate: bool = False

    @property
    def id(self) -> str:
        """The message id."""
        return str(self.row["id"])

    @property
    def seq(self) -> int:
        """The message's place in its session."""
        return self.row["seq"]


class _Shard:
    """One writer task: its queue, its PostgreSQL connection with the statement prepared on it, and
    its Redis connection (an Announcer's calls must not overlap: one reply is read per call)."""

    def __init__(self, queue_max: int, redis: aioredis.Redis) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(queue_max)
        self.task: asyncio.Task | None = None
        self.conn: aiopg.Connection | None = None
        self.cursor: aiopg.Cursor | None = None
        self.prepared_at = 0.0  # time.monotonic() of the last PREPARE on conn
        self.last_batch = 0  # messages in the batch taken before this one
        self.announcing: collections.deque[asyncio.Task] = collections.deque()  # stored batches being published, oldest first
        self.announcer = Announcer(redis)


def _refuse(batch: list[tuple[Draft, asyncio.Future]], error: ApiError) -> None:
    """Fail every sender of a batch that could not be stored (each may retry)."""
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _draft_fault(exc: BaseException) -> bool:
    """True when PostgreSQL refused what a batch holds (a value it cannot store), not an outage:
    one of its drafts is the culprit, and storing the batch in parts finds it."""
    return isinstance(exc, psycopg2.DatabaseError) and not is_outage(exc)


def _store_failed(exc: BaseException) -> ApiError:
    """The error the senders of a batch that could not be stored get (SERVICE_UNAVAILABLE for an outage)."""
    return failure(exc, "The message could not be stored; please retry")


class MessageWriter:
    """Store messages in batches, `shards` batches in flight at most; publish after commit."""

    def __init__(self, pool: aiopg.Pool, dsn: str, redis: aioredis.Redis, bus: Bus, *, queue_max: int = 10000,
                 batch_max: int = 500, shards: int = 1, linger: float = 0.0) -> None:
        self.pool = pool  # for reading back repeated messages
        self.dsn = dsn  # each writer opens its own connection
        self.bus = bus
        self.batch_max = batch_max
        self.linger = linger  # seconds a batch waits for more messages (see LINGER_BELOW)
        self._shards = [_Shard(queue_max, redis) for _ in range(max(1, shards))]
        self.batches = 0
        self.stored = 0
        self.on_batch: Callable[[int, int, float], None] = lambda size, stored, seconds: None  # metrics

    @property
    def running(self) -> bool:
        """True while every writer task runs."""
        return all(shard.task is not None and not shard.task.done() for shard in self._shards)

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
            await self._drop_connection(shard)
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

    async def _cursor(self, shard: _Shard) -> aiopg.Cursor:
        """The shard's cursor (tuples, not dicts) on its own connection, opened once, with
        STORE_BATCH prepared on it (again every REPREPARE s). One cursor for every batch: an aiopg
        cursor is a reference cycle, which only the garbage collector's pauses reclaim."""
        if shard.cursor is None:
            conn = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
            try:
                cursor = await conn.cursor(cursor_factory=psycopg2.extensions.cursor)
                await store.prepare_batch(cursor)
            except BaseException:
                await conn.close()
                raise
            shard.conn, shard.cursor, shard.prepared_at = conn, cursor, time.monotonic()
        elif time.monotonic() - shard.prepared_at > REPREPARE:
            await store.prepare_batch_again(shard.cursor)
            shard.prepared_at = time.monotonic()
        return shard.cursor

    async def _connect(self) -> aiopg.Connection:
        return await aiopg.connect(self.dsn, timeout=None, enable_hstore=False, options=db.SESSION_OPTIONS,
                                   application_name=WRITER_APPLICATION_NAME)

    async def _drop_connection(self, shard: _Shard) -> None:
        """Close the shard's connection (after an error, its state is unknown)."""
        conn, shard.conn, shard.cursor = shard.conn, None, None
        if conn is not None:
            await conn.close()

    async def _write(self, shard: _Shard, batch: list[tuple[Draft, asyncio.Future]]) -> None:
        """Store one batch and start publishing it; never raises (failures go to the batch's futures).

        Publishing runs beside the next batch's statement: PostgreSQL stores batch N+1 while
        Redis announces batch N. Batches are announced in the order they were stored, one at
        a time: each announcement waits for the one before it, the writer only for the
        ANNOUNCING_MAX-th before (waiting on each one put the loop's backlog between two
        statements: 0.85 ms of PostgreSQL idle per 1.6 ms batch at maximum load).
        """
        drafts = [d for d, _ in batch]
        started = time.monotonic()
        try:
            results, fresh = await self._store(shard, drafts)
        except asyncio.CancelledError as exc:  # stopped before the batch was through
            _refuse(batch, _store_failed(exc))
            raise
        except Exception as exc:
            if not _draft_fault(exc):
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
                       fresh: list[tuple[dict, int, Draft]], prior: asyncio.Task | None) -> None:
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

    async def _store(self, shard: _Shard, drafts: list[Draft]) -> tuple[list[Any], list[tuple[dict, int, Draft]]]:
        """Store a batch in one statement; the result (Stored or SessionNotFound) of each draft, and what is new."""
        first: dict[tuple[str, str], int] = {}  # a clientMessageId repeated within the batch: its first draft
        unique: list[int] = []
        for n, draft in enumerate(drafts):
            key = (draft.session_id, draft.client_message_id)
            if draft.client_message_id and key in first:
                continue
            if draft.client_message_id:
                first[key] = n
            unique.append(n)
        for attempt in range(1, RETRIES + 1):
            now = dt.datetime.now(dt.timezone.utc)
            stamp = iso(now)
            rows = [self._row(drafts[n]) for n in unique]
            batch = [{"o": n, "tenant_id": row["tenant_id"], "session_id": row["session_id"],
                      "sender_type": row["sender_type"], "sender_id": row["sender_id"], "user_id": row["user_id"],
                      "message": row["message"], "message_type": row["message_type"],
                      "client_message_id": row["client_message_id"], "metadata": row["metadata"]}
                     for n, row in zip(unique, rows)]
            try:
                cursor = await self._cursor(shard)
                answers = await store.store_batch(cursor, dumps_str(batch), now)
                break
            except RETRYABLE as exc:
                if attempt == RETRIES:
                    raise
                log.info("batch of %d met another writer (%s); retrying", len(drafts), type(exc).__name__)
            except BaseException as exc:
                if not _draft_fault(exc):  # its state is unknown; a refused value leaves it usable
                    await self._drop_connection(shard)
                raise
        by_draft = dict(zip(unique, rows))
        results: list[Any] = [None] * len(drafts)
        fresh: list[tuple[dict, int, Draft]] = []
        repeated: dict[int, str] = {}
        outbox_ids: dict[str, int] = {}
        for o, message_id, seq, created_at in answers:
            if o < 0:
                outbox_ids[message_id] = seq  # (-1, message id, outbox id)
            elif seq is None:
                repeated[o] = message_id
            else:
                row = by_draft[o]
                row["id"], row["seq"] = message_id, seq
                row["created_at"], row["timestamp"] = (now, stamp) if created_at is None else (created_at, iso(created_at))
                results[o] = Stored(row)
                fresh.append((row, 0, drafts[o]))
        fresh = [(row, outbox_ids[row["id"]], draft) for row, _, draft in fresh]
        if repeated:
            async with self.pool.acquire() as conn:
                stored = {str(r["id"]): r for r in await store.find_by_ids(conn, list(repeated.values()))}
            for o, message_id in repeated.items():
                results[o] = Stored(stored[message_id], duplicate=True)
        for n, draft in enumerate(drafts):
            if results[n] is None and draft.client_message_id:
                earlier = results[first[(draft.session_id, draft.client_message_id)]]
                if isinstance(earlier, Stored):
                    results[n] = Stored(earlier.row, duplicate=True)
            if results[n] is None:
                results[n] = SessionNotFound(f"Session {draft.session_id} not found")
        return results, fresh

    @staticmethod
    def _row(draft: Draft) -> dict:
        """The message row of a draft; id, seq and time come from the statement."""
        return {"id": None, "tenant_id": draft.tenant_id, "session_id": draft.session_id, "seq": None,
                "sender_type": draft.sender_type, "sender_id": draft.sender_id, "user_id": draft.user_id,
                "message": draft.text, "message_type": draft.message_type,
                "client_message_id": draft.client_message_id, "metadata": draft.metadata}

    def _deliver_local(self, events: list[Event]) -> None:
        for event in events:
            self.bus.deliver_local(rooms.conversation(event.session_id), event)
