"""The message write path: one writer per process batching what arrives into one transaction.

`await writer.submit(draft)` returns the stored message once it is committed. The writer task
takes everything queued (up to `batch_max`), and in one transaction locks the sessions touched
(in a fixed order), finds repeated clientMessageIds, assigns each session's next seqs, inserts
all new messages with one multi-row INSERT and their webhook outbox rows with another, and
commits. Then one Redis pipeline publishes each message's event to `conversation:{sessionId}`,
XADDs its webhook job to `meta:webhook_jobs` and refreshes `session:{sessionId}`; then the
futures resolve. A repeated clientMessageId resolves to the stored row (not published again).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiopg
import redis.asyncio as aioredis

from ..errors import ApiError, InternalError
from ..jsonutil import dumps, dumps_str, iso, new_uuid
from ..tasks import cancel_and_wait
from . import messages
from .sessions import SESSION_TTL, session_cache_value

log = logging.getLogger(__name__)

WEBHOOK_STREAM = "meta:webhook_jobs"
# session:{sessionId} (24 h TTL) is refreshed at most this often per session (seconds).
SESSION_REFRESH = 30.0
OUTBOX_ROW = "(%s, %s::uuid, 'message.created', %s::jsonb)"
# ARGV: message count, session TTL, then per message (channel, event, outbox id, message id,
# tenant id), then (key, value) of each session:{id} to refresh. One call, one reply.
ANNOUNCE = """
local count = tonumber(ARGV[1])
local i = 3
for _ = 1, count do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
  redis.call('XADD', KEYS[1], '*', 'outbox_id', ARGV[i + 2], 'message_id', ARGV[i + 3], 'tenant_id', ARGV[i + 4])
  i = i + 5
end
while i < #ARGV do
  redis.call('SET', ARGV[i], ARGV[i + 1], 'EX', ARGV[2])
  i = i + 2
end
return count
"""
STOPPED = object()


@dataclass
class Draft:
    """A message to store."""

    tenant_id: str
    session_id: str
    sender_type: str  # visitor | agent | ai | system
    text: str
    sender_id: str | None = None
    user_id: str | None = None
    client_message_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    message_type: str = "text"


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


class SessionGone(ApiError):
    status, code, default_message = 404, "SESSION_NOT_FOUND", "Session not found"


class MessageWriter:
    """Store messages in batches; publish after commit."""

    def __init__(self, pool: aiopg.Pool, redis: aioredis.Redis, *, queue_max: int = 10000, batch_max: int = 500) -> None:
        self.pool = pool
        self.redis = redis
        self.batch_max = batch_max
        self._queue: asyncio.Queue = asyncio.Queue(queue_max)
        self._task: asyncio.Task | None = None
        self._announce_script = redis.register_script(ANNOUNCE)
        self._refreshed: dict[str, float] = {}  # session id -> when session:{id} was last refreshed
        self.batches = 0
        self.stored = 0

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="message-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.put(STOPPED)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        except asyncio.TimeoutError:
            await cancel_and_wait(self._task)

    async def submit(self, draft: Draft) -> Stored:
        """Queue a message (waiting while the queue is full) and return it once committed."""
        if self._task is None or self._task.done():
            raise InternalError("The message writer is not running")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((draft, future))
        return await future

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is STOPPED:
                return
            batch = [item]
            stop = False
            while len(batch) < self.batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is STOPPED:
                    stop = True
                    break
                batch.append(item)
            live = [(d, f) for d, f in batch if not f.done()]
            if live:
                await asyncio.shield(self._write(live))
            if stop:
                return

    async def _write(self, batch: list[tuple[Draft, asyncio.Future]]) -> None:
        """Store one batch; never raises (failures go to the batch's futures)."""
        try:
            results, new_rows, outbox_ids, sessions = await self._commit([d for d, _ in batch])
        except Exception as exc:
            log.exception("storing a batch of %d messages failed", len(batch))
            error = InternalError("The message could not be stored; please retry", details={"reason": type(exc).__name__})
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.batches += 1
        self.stored += len(new_rows)
        for attempt in (1, 2):  # a pooled connection may be stale after a Redis restart: retry once
            try:
                await self._announce(new_rows, outbox_ids, sessions)
                break
            except Exception as exc:  # stored but not announced: the reconciler re-adds the jobs
                log.warning("publishing %d stored messages failed (attempt %d): %s", len(new_rows), attempt, exc)
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _commit(self, drafts: list[Draft]):
        """One transaction in four round trips: lock, find repeats, insert everything, commit."""
        session_ids = sorted({d.session_id for d in drafts})
        keyed = [(d.session_id, d.client_message_id) for d in drafts if d.client_message_id]
        async with self.pool.acquire() as conn:
            async with conn.cursor() as cur:
                try:
                    # Locked in id order (no deadlocks); a committed seq N implies all seqs < N are committed.
                    await cur.execute(
                        "BEGIN; SELECT session_id, tenant_id, last_seq, user_id, fingerprint, started_at FROM sessions"
                        " WHERE session_id = ANY(%s) ORDER BY session_id FOR UPDATE", (session_ids,))
                    sessions = {row["session_id"]: row for row in await cur.fetchall()}
                    existing: dict[tuple[str, str], dict] = {}
                    if keyed:
                        # Joined pair by pair, so the unique (session_id, client_message_id) index is
                        # used on both columns whatever the statistics say (ANY/ANY let the planner
                        # read every message of each conversation instead).
                        await cur.execute(
                            f"SELECT {messages.COLUMNS} FROM messages"
                            " JOIN unnest(%s::text[], %s::text[]) AS k(sid, cmid)"
                            " ON session_id = k.sid AND client_message_id = k.cmid",
                            ([sid for sid, _ in keyed], [cmid for _, cmid in keyed]))
                        existing = {(r["session_id"], r["client_message_id"]): r for r in await cur.fetchall()}
                    results, new_rows = self._assign(drafts, sessions, existing)
                    outbox_ids: list[int] = []
                    if new_rows:
                        await cur.execute(*self._insert_all(new_rows, sessions))
                        by_message = {str(r["message_id"]): r["id"] for r in await cur.fetchall()}
                        outbox_ids = [by_message[row["id"]] for row in new_rows]
                    await cur.execute("COMMIT")
                except BaseException:
                    await cur.execute("ROLLBACK")
                    raise
        return results, new_rows, outbox_ids, sessions

    @staticmethod
    def _assign(drafts: list[Draft], sessions: dict[str, dict], existing: dict[tuple[str, str], dict]):
        """Give each new draft its session's next seq; repeats resolve to the stored row."""
        # Taken after the locks: a later seq of a session never gets an earlier created_at.
        now = dt.datetime.now(dt.timezone.utc)
        stamp = iso(now)
        results: list[Any] = []
        new_rows: list[dict] = []
        for draft in drafts:
            session = sessions.get(draft.session_id)
            key = (draft.session_id, draft.client_message_id)
            if session is None or session["tenant_id"] != draft.tenant_id:
                results.append(SessionGone(f"Session {draft.session_id} not found"))
            elif draft.client_message_id and key in existing:
                # Stored earlier, or earlier in this batch: acked again with the same id and seq.
                results.append(Stored(existing[key], duplicate=True))
            else:
                session["last_seq"] += 1
                row = {
                    "id": new_uuid(), "tenant_id": draft.tenant_id, "session_id": draft.session_id,
                    "seq": session["last_seq"], "sender_type": draft.sender_type, "sender_id": draft.sender_id,
                    "user_id": draft.user_id, "message": draft.text, "message_type": draft.message_type,
                    "client_message_id": draft.client_message_id, "metadata": draft.metadata, "created_at": now,
                    "timestamp": stamp,
                }
                if draft.client_message_id:
                    existing[key] = row
                new_rows.append(row)
                results.append(Stored(row))
        return results, new_rows

    @staticmethod
    def _insert_all(rows: list[dict], sessions: dict[str, dict]) -> tuple[str, list]:
        """One statement: the messages, the sessions' new last_seq, the webhook outbox rows (RETURNING their ids)."""
        columns = ("id", "tenant_id", "session_id", "seq", "sender_type", "sender_id", "user_id", "message",
                   "message_type", "client_message_id", "metadata", "created_at")
        row_sql = "(" + ",".join("%s::jsonb" if c == "metadata" else "%s" for c in columns) + ")"
        params: list[Any] = [dumps_str(r[c]) if c == "metadata" else r[c] for r in rows for c in columns]
        touched = sorted({r["session_id"] for r in rows})
        for sid in touched:
            params += [sid, sessions[sid]["last_seq"]]
        for row in rows:
            payload = {"event": "message.created", "timestamp": row["timestamp"], "data": messages.webhook_data(row)}
            params += [row["tenant_id"], row["id"], dumps_str(payload)]
        sql = (
            f"WITH m AS (INSERT INTO messages ({', '.join(columns)}) VALUES {','.join([row_sql] * len(rows))}),"
            " s AS (UPDATE sessions SET last_seq = v.last_seq, last_activity_at = now()"
            f" FROM (VALUES {','.join(['(%s, %s::bigint)'] * len(touched))}) AS v(session_id, last_seq)"
            " WHERE sessions.session_id = v.session_id)"
            " INSERT INTO webhook_outbox (tenant_id, message_id, event, payload)"
            f" VALUES {','.join([OUTBOX_ROW] * len(rows))}"
            " RETURNING id, message_id"
        )
        return sql, params

    async def _announce(self, rows: list[dict], outbox_ids: list[int], sessions: dict[str, dict]) -> None:
        """One Redis call for the whole batch: PUBLISH each event, XADD each webhook job, refresh sessions."""
        if not rows:
            return
        args: list[Any] = [len(rows), SESSION_TTL]
        for row, outbox_id in zip(rows, outbox_ids):
            args += [f"conversation:{row['session_id']}", messages.message_event(row), outbox_id, row["id"], row["tenant_id"]]
        now = time.monotonic()
        for sid in {r["session_id"] for r in rows}:
            if now - self._refreshed.get(sid, -SESSION_REFRESH) >= SESSION_REFRESH:
                self._refreshed[sid] = now
                args += [f"session:{sid}", dumps(session_cache_value(sessions[sid]))]
        await self._announce_script(keys=[WEBHOOK_STREAM], args=args)
        if len(self._refreshed) > 10000:
            self._refreshed = {sid: t for sid, t in self._refreshed.items() if now - t < SESSION_REFRESH}
