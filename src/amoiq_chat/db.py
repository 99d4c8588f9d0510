"""The aiopg pool, small query helpers, and the migrations in `sql/`."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import aiopg
import psycopg2.extras
from psycopg2.extras import Json

from .settings import ROOT

log = logging.getLogger(__name__)

SQL_DIR = ROOT / "sql"
MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# One advisory lock so that several processes starting at once migrate one at a time.
MIGRATION_LOCK = 0x616D6F69


def as_id(text: str) -> int | None:
    """A BIGSERIAL id from text, or None when the text cannot be one (not digits, too long)."""
    return int(text) if text.isdigit() and len(text) < 19 else None


def jsonb(value: Any) -> Json:
    """Wrap a Python value as a JSONB parameter."""
    return Json(value)


# Every connection's session settings: times in UTC; and its name in pg_stat_activity.
SESSION_OPTIONS = "-c timezone=UTC"
APPLICATION_NAME = "amoiq-chat"


class Pool(aiopg.Pool):
    """aiopg's pool, mended for PostgreSQL ending its connections (a failover, terminated backends):
    a connection that comes back closed wakes a request waiting for one (aiopg's release does not:
    the waiting requests waited out their 10 s though the pool had room again); and a free
    connection that closed while the pool was opening another is dropped before it is handed out
    (aiopg's acquire asserted on it: an INTERNAL_ERROR)."""

    async def _fill_free_pool(self, override_min: bool) -> None:
        while True:
            await super()._fill_free_pool(override_min)
            closed = [conn for conn in self._free if conn.closed]
            if not closed:
                return
            for conn in closed:
                self._free.remove(conn)

    def release(self, conn: aiopg.Connection) -> "asyncio.Future[None]":
        """Give a connection back; when it is closed, wake a waiting acquirer (it opens a new one)."""
        future = super().release(conn)
        if conn.closed and not self.closed:
            return asyncio.ensure_future(self._wakeup())
        return future


async def create_pool(dsn: str, minsize: int = 2, maxsize: int = 10) -> aiopg.Pool:
    """Open the pool once; rows come back as dicts, times in UTC."""
    return await Pool.from_pool_fill(
        dsn,
        minsize,
        maxsize,
        10,  # seconds: connecting, waiting for a free connection, each statement
        enable_json=True, enable_hstore=True, enable_uuid=True, echo=False, on_connect=None, pool_recycle=-1.0,
        cursor_factory=psycopg2.extras.RealDictCursor,
        options=SESSION_OPTIONS,
        application_name=APPLICATION_NAME,
    )


async def fetch_one(conn: aiopg.Connection, sql: str, params: Sequence[Any] | dict | None = None) -> dict | None:
    """Run one statement and return its first row, or None."""
    async with conn.cursor() as cur:
        await cur.execute(sql, params)
        return await cur.fetchone() if cur.description else None


async def fetch_all(conn: aiopg.Connection, sql: str, params: Sequence[Any] | dict | None = None) -> list[dict]:
    """Run one statement and return all its rows."""
    async with conn.cursor() as cur:
        await cur.execute(sql, params)
        return list(await cur.fetchall()) if cur.description else []


async def execute(conn: aiopg.Connection, sql: str, params: Sequence[Any] | dict | None = None) -> int:
    """Run one statement and return the number of rows it touched."""
    async with conn.cursor() as cur:
        await cur.execute(sql, params)
        return cur.rowcount


async def ping(pool: aiopg.Pool) -> None:
    """Run a trivial statement on a pooled connection (raises when PostgreSQL does not answer)."""
    async with pool.acquire() as conn:
        await fetch_one(conn, "SELECT 1")


@contextlib.asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[aiopg.Connection]:
    """Yield a pooled connection inside BEGIN ... COMMIT (ROLLBACK on error)."""
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            await cur.execute("BEGIN")
            try:
                yield conn
            except BaseException:
                await cur.execute("ROLLBACK")
                raise
            await cur.execute("COMMIT")


def migration_files(folder: Path = SQL_DIR) -> list[tuple[str, Path]]:
    """Return (version, path) of every migration, in order."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name} must be named NNN_description.sql")
        found.append((path.stem, path))
    versions = [int(name[:3]) for name, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migration files share a number")
    return found


async def migrate(pool: aiopg.Pool, folder: Path = SQL_DIR) -> list[str]:
    """Apply the migrations not yet recorded, all in one transaction; return their names."""
    applied: list[str] = []
    async with transaction(pool) as conn:
        await execute(conn, "SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await execute(
            conn,
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        done = {row["version"] for row in await fetch_all(conn, "SELECT version FROM schema_migrations")}
        for name, path in migration_files(folder):
            if name in done:
                continue
            log.info("applying migration %s", name)
            await execute(conn, path.read_text())
            await execute(conn, "INSERT INTO schema_migrations (version) VALUES (%s)", (name,))
            applied.append(name)
    return applied
