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
from dataclasses import dataclass, field
from typing import Any

import aiopg
import redis.asyncio as aioredis

from .. import db
from ..errors import ApiError, InternalError
from ..jsonutil import dumps, iso, new_uuid
from ..tasks import cancel_and_wait
from . import messages
from .sessions import SESSION_TTL, session_cache_value

log = logging.getLogger(__name__)

WEBHOOK_STREAM = "meta:webhook_jobs"
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
        session_ids = sorted({d.session_id for d in drafts})
        keyed = [(d.session_id, d.client_message_id) for d in drafts if d.client_message_id]
        async with db.transaction(self.pool) as conn:
            locked = await db.fetch_all(
                conn,
                "SELECT session_id, tenant_id, last_seq, user_id, fingerprint, started_at FROM sessions"
                " WHERE session_id = ANY(%s) ORDER BY session_id FOR UPDATE",
                (session_ids,),
            )
            sessions = {row["session_id"]: row for row in locked}
            # Taken after the locks: a later seq of a session never gets an earlier created_at.
            now = dt.datetime.now(dt.timezone.utc)
            existing: dict[tuple[str, str], dict] = {}
            if keyed:
                rows = await db.fetch_all(
                    conn,
                    f"SELECT {messages.COLUMNS} FROM messages WHERE session_id = ANY(%s) AND client_message_id = ANY(%s)",
                    ([s for s, _ in keyed], [c for _, c in keyed]),
                )
                existing = {(r["session_id"], r["client_message_id"]): r for r in rows}
            results: list[Any] = []
            new_rows: list[dict] = []
            for draft in drafts:
                session = sessions.get(draft.session_id)
                key = (draft.session_id, draft.client_message_id)
                if session is None or session["tenant_id"] != draft.tenant_id:
                    results.append(SessionGone(f"Session {draft.session_id} not found"))
                elif draft.client_message_id and key in existing:
                    results.append(Stored(existing[key], duplicate=True))
                else:
                    session["last_seq"] += 1
                    row = {
                        "id": new_uuid(), "tenant_id": draft.tenant_id, "session_id": draft.session_id,
                        "seq": session["last_seq"], "sender_type": draft.sender_type, "sender_id": draft.sender_id,
                        "user_id": draft.user_id, "message": draft.text, "message_type": draft.message_type,
                        "client_message_id": draft.client_message_id, "metadata": draft.metadata, "created_at": now,
                    }
                    if draft.client_message_id:
                        existing[key] = row
                    new_rows.append(row)
                    results.append(Stored(row))
            outbox_ids: list[int] = []
            if new_rows:
                await self._insert(conn, new_rows, sessions)
                outbox_ids = await self._insert_outbox(conn, new_rows)
        # A clientMessageId repeated inside one batch resolves to the same row, marked duplicate.
        seen: set[int] = set()
        for index, result in enumerate(results):
            if isinstance(result, Stored) and not result.duplicate:
                if id(result.row) in seen:
                    results[index] = Stored(result.row, duplicate=True)
                seen.add(id(result.row))
        return results, new_rows, outbox_ids, sessions

    async def _insert(self, conn: aiopg.Connection, rows: list[dict], sessions: dict[str, dict]) -> None:
        columns = ("id", "tenant_id", "session_id", "seq", "sender_type", "sender_id", "user_id", "message",
                   "message_type", "client_message_id", "metadata", "created_at")
        values = ",".join(["(" + ",".join(["%s"] * len(columns)) + ")"] * len(rows))
        params = [db.jsonb(r[c]) if c == "metadata" else r[c] for r in rows for c in columns]
        await db.execute(conn, f"INSERT INTO messages ({', '.join(columns)}) VALUES {values}", params)
        touched = {r["session_id"] for r in rows}
        pairs = [(sid, sessions[sid]["last_seq"]) for sid in sorted(touched)]
        await db.execute(
            conn,
            "UPDATE sessions SET last_seq = v.last_seq, last_activity_at = now()"
            " FROM (VALUES " + ",".join(["(%s, %s::bigint)"] * len(pairs)) + ") AS v(session_id, last_seq)"
            " WHERE sessions.session_id = v.session_id",
            [x for pair in pairs for x in pair],
        )

    async def _insert_outbox(self, conn: aiopg.Connection, rows: list[dict]) -> list[int]:
        values = ",".join(["(%s, %s, 'message.created', %s)"] * len(rows))
        params = []
        for row in rows:
            payload = {"event": "message.created", "timestamp": iso(row["created_at"]), "data": messages.webhook_data(row)}
            params += [row["tenant_id"], row["id"], db.jsonb(payload)]
        inserted = await db.fetch_all(
            conn, f"INSERT INTO webhook_outbox (tenant_id, message_id, event, payload) VALUES {values} RETURNING id, message_id",
            params,
        )
        by_message = {str(r["message_id"]): r["id"] for r in inserted}
        return [by_message[str(row["id"])] for row in rows]

    async def _announce(self, rows: list[dict], outbox_ids: list[int], sessions: dict[str, dict]) -> None:
        if not rows:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for row, outbox_id in zip(rows, outbox_ids):
                pipe.publish(f"conversation:{row['session_id']}", messages.message_event(row))
                pipe.xadd(WEBHOOK_STREAM, {"outbox_id": outbox_id, "message_id": row["id"], "tenant_id": row["tenant_id"]})
            for sid in {r["session_id"] for r in rows}:
                pipe.set(f"session:{sid}", dumps(session_cache_value(sessions[sid])), ex=SESSION_TTL)
            await pipe.execute()
