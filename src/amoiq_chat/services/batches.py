"""What the writer stores and how: drafts, stored messages, and one writer's own PostgreSQL connection
storing a batch of drafts with the prepared batch statement (`store/messages.py`).

A batch goes over as one JSON parameter of one statement (one round trip, one transaction). A
clientMessageId repeated within the batch is stored once; one repeated from before resolves to
the stored row; a batch that met another process's writer is retried.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiopg
import psycopg2.errors
import psycopg2.extensions

from .. import db
from ..errors import SessionNotFound
from ..jsonutil import dumps_str, iso
from ..outages import is_outage
from ..store import messages as store

log = logging.getLogger(__name__)

# A batch that met another writer (two processes, one clientMessageId or a lock cycle) is retried.
RETRIES = 3
RETRYABLE = (psycopg2.errors.UniqueViolation, psycopg2.errors.DeadlockDetected,
             psycopg2.errors.SerializationFailure)
CONNECT_TIMEOUT = 10.0
WRITER_APPLICATION_NAME = f"{db.APPLICATION_NAME} writer"  # its connections in pg_stat_activity
REPREPARE = 30.0  # seconds between two PREPAREs of the batch statement on one connection


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


def draft_fault(exc: BaseException) -> bool:
    """True when PostgreSQL refused what a batch holds (a value it cannot store), not an outage:
    one of its drafts is the culprit, and storing the batch in parts finds it."""
    return isinstance(exc, psycopg2.DatabaseError) and not is_outage(exc)


class BatchConnection:
    """One writer's own PostgreSQL connection (outside the pool), with the batch statement prepared on it."""

    def __init__(self, dsn: str, hook_all: bool = False) -> None:
        self.dsn = dsn
        self.hook_all = hook_all  # every message gets a webhook job (the global WEBHOOK_URL is set)
        self.conn: aiopg.Connection | None = None
        self.cursor: aiopg.Cursor | None = None
        self.prepared_at = 0.0  # time.monotonic() of the last PREPARE on conn

    async def _cursor(self) -> aiopg.Cursor:
        """This connection's cursor (tuples, not dicts) on its own connection, opened once, with
        STORE_BATCH prepared on it (again every REPREPARE s). One cursor for every batch: an aiopg
        cursor is a reference cycle, which only the garbage collector's pauses reclaim."""
        if self.cursor is None:
            conn = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
            try:
                cursor = await conn.cursor(cursor_factory=psycopg2.extensions.cursor)
                await store.prepare_batch(cursor)
            except BaseException:
                await conn.close()
                raise
            self.conn, self.cursor, self.prepared_at = conn, cursor, time.monotonic()
        elif time.monotonic() - self.prepared_at > REPREPARE:
            await store.prepare_batch_again(self.cursor)
            self.prepared_at = time.monotonic()
        return self.cursor

    async def _connect(self) -> aiopg.Connection:
        return await aiopg.connect(self.dsn, timeout=None, enable_hstore=False, options=db.SESSION_OPTIONS,
                                   application_name=WRITER_APPLICATION_NAME)

    async def drop(self) -> None:
        """Close the connection (after an error, its state is unknown); the next batch opens a new one."""
        conn, self.conn, self.cursor = self.conn, None, None
        if conn is not None:
            await conn.close()

    async def store(self, pool: aiopg.Pool, drafts: list[Draft]) -> tuple[list[Any], list[tuple[dict, int | None, Draft]]]:
        """Store a batch in one statement; the result (Stored or SessionNotFound) of each draft, and what is
        new: (row, its outbox id or None when its tenant has no webhook for it, draft)."""
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
                cursor = await self._cursor()
                answers = await store.store_batch(cursor, dumps_str(batch), now, self.hook_all)
                break
            except RETRYABLE as exc:
                if attempt == RETRIES:
                    raise
                log.info("batch of %d met another writer (%s); retrying", len(drafts), type(exc).__name__)
            except BaseException as exc:
                if not draft_fault(exc):  # its state is unknown; a refused value leaves it usable
                    await self.drop()
                raise
        by_draft = dict(zip(unique, rows))
        results: list[Any] = [None] * len(drafts)
        fresh: list[tuple[dict, int | None, Draft]] = []
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
                fresh.append((row, None, drafts[o]))
        fresh = [(row, outbox_ids.get(row["id"]), draft) for row, _, draft in fresh]
        if repeated:
            async with pool.acquire() as conn:
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
