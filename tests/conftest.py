"""Fixtures: a fresh PostgreSQL database per test run, a Redis database, apps over real services.

With DATABASE_URL and REDIS_URL set, those servers are used (a database named
amoiq_test_<random> is created and dropped); otherwise the embedded servers are started under
var/test/ and stopped at the end.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import psycopg2
import pytest
from aiohttp import web

from amoiq_chat import db
from amoiq_chat.app import create_app
from amoiq_chat.settings import ROOT, Settings, load_settings, with_database, with_redis_db

TEST_JWT_SECRET = "test-secret-" + "x" * 32


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL): configured ones, or embedded ones started here."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    embedded = None
    if not (database_url and redis_url):
        from amoiq_chat.embedded import EmbeddedServers

        embedded = EmbeddedServers(ROOT / "var" / "test")
        pg, rd = embedded.start(not database_url, not redis_url)
        database_url, redis_url = database_url or pg, redis_url or rd
    try:
        yield database_url, redis_url
    finally:
        if embedded is not None:
            embedded.stop()


async def _migrate(url: str) -> None:
    pool = await db.create_pool(url, 1, 1)
    try:
        await db.migrate(pool)
    finally:
        pool.close()
        await pool.wait_closed()


@pytest.fixture(scope="session")
def database_url(server_urls: tuple[str, str]) -> Iterator[str]:
    """A database created and migrated for this test run, dropped after it."""
    server = server_urls[0]
    name = f"amoiq_test_{secrets.token_hex(4)}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        url = with_database(server, name)
        asyncio.run(_migrate(url))
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def redis_url(server_urls: tuple[str, str]) -> str:
    """Redis database 15 (ids in tests are random, so concurrent runs do not collide)."""
    return with_redis_db(server_urls[1], int(os.environ.get("TEST_REDIS_DB", "15")))


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, tmp_path_factory) -> Settings:
    """Settings of a test server: real services, generous rate limits, loopback webhooks allowed."""
    return load_settings(
        env={},
        database_url=database_url,
        redis_url=redis_url,
        jwt_secret=TEST_JWT_SECRET,
        rate_limit_http="100000/60",
        rate_limit_auth="100000/60",
        webhook_allow_private=True,
        seed_demo=False,
        bot_enabled=False,  # the chat tests talk to agents; the support tests turn the assistant on
        var_dir=str(tmp_path_factory.mktemp("var")),
    )


@pytest.fixture
def make_app(settings: Settings):
    """Build an app, optionally with changed settings."""

    def build(**changes: Any) -> web.Application:
        return create_app(settings.replace(**changes) if changes else settings)

    return build


@pytest.fixture
async def client(aiohttp_client, make_app):
    """A test client over a fresh app on the test database."""
    return await aiohttp_client(make_app())


@pytest.fixture
def db_conn(database_url: str) -> Iterator[Any]:
    """A plain synchronous connection to the test database, for asserting rows."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Block until something accepts connections on the port (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@pytest.fixture
def redis_server() -> Iterator[tuple[str, subprocess.Popen]]:
    """A throw-away redis-server process of our own on a free port: (url, process)."""
    from amoiq_chat.embedded import _redis_binary

    port = free_port()
    process = subprocess.Popen(
        [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for running the `amoiq-chat` command against the test services."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               JWT_SECRET=settings.jwt_secret, SEED_DEMO="0", LOG_LEVEL="WARNING")
    env.update(extra)
    return env


CLI = [sys.executable, "-m", "amoiq_chat"]
TESTS_DIR = Path(__file__).parent
