"""What the bench runs against: the relay or the server as child processes, their backing services, set-up and checks."""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from redis.exceptions import ResponseError

from amoiq_chat.settings import with_database, with_redis_db

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "bench"
RESULTS = ROOT / "bench" / "results"
# The bench's own database and Redis database (dropped and emptied at each run); other names let
# two checkouts bench on one machine without emptying each other's.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "amoiq_bench")
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "14"))
WEBHOOK_STREAM = "meta:webhook_jobs"
HIGH_LIMIT = "1000000/1"   # rate limits out of the way: the bench measures the path, not the limiter


def git(*args: str, cwd: Path = ROOT) -> str:
    """What `git args` prints in `cwd`, stripped; "" when it fails or git is not installed."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def server_checkout() -> Path:
    """The checkout whose server the bench runs: BENCH_SERVER_SRC (another checkout, to measure before
    and after a change), else this tree."""
    other = os.environ.get("BENCH_SERVER_SRC")
    return Path(other).resolve() if other else ROOT


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the bench dies, however it dies (Linux)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Child:
    """A child process (relay or server) with its log file, CPU time and resident memory."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        VAR.mkdir(parents=True, exist_ok=True)
        self.log_path = VAR / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      preexec_fn=_die_with_parent)
        self.process = psutil.Process(self.popen.pid)

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        """Poll GET path until it answers (any status below 500 for the relay, 200 for /api/health)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{path}"
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; see {self.log_path}: {self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and path != "/api/health":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        """The last lines of the log, for error messages."""
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def processes(self) -> list[psutil.Process]:
        """The process and its children (`serve --workers` forks)."""
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _sum(self, read) -> float:
        total = 0.0
        for proc in self.processes():
            try:
                total += read(proc)
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu_seconds(self) -> float:
        """User+system CPU time so far."""
        return self._sum(_cpu)

    def system_seconds(self) -> float:
        """System (kernel) CPU time so far: mostly socket sends and receives."""
        return self._sum(lambda proc: proc.cpu_times().system)

    def rss(self) -> int:
        """Resident memory in bytes."""
        return int(self._sum(lambda proc: proc.memory_info().rss))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except psutil.NoSuchProcess:
        return 0.0


class BackingCpu:
    """CPU time of the bench database's PostgreSQL backends and of the Redis server the bench uses.

    PostgreSQL's shared processes (WAL writer, checkpointer, ...) are not counted; a Redis
    server that other programs also use is counted whole.
    """

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self.redis_socket = parts.path if parts.scheme == "unix" else None
        self.redis_mark = self.redis_socket or f":{parts.port or 6379}"
        self.start: dict[int, tuple[float, bool]] = {}

    def _ours(self, proc: psutil.Process) -> bool:
        name = proc.info["name"] or ""
        cmdline = " ".join(proc.info["cmdline"] or [])
        if name.startswith("postgres"):
            return f" {BENCH_DATABASE} " in cmdline
        if name.startswith("redis-server"):
            # Redis names its process after one address: a unix socket shows only when it has no TCP port.
            return self.redis_mark in cmdline or (self.redis_socket is not None and self._listens_on(proc))
        return False

    def _listens_on(self, proc: psutil.Process) -> bool:
        connections = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6 has only the latter
        return any(conn.laddr == self.redis_socket for conn in connections(kind="unix"))

    def _snapshot(self) -> dict[int, tuple[float, bool]]:
        found = {}
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                if self._ours(proc):
                    found[proc.pid] = (_cpu(proc), (proc.info["name"] or "").startswith("redis-server"))
            except psutil.Error:
                pass
        return found

    def begin(self) -> None:
        """Remember the CPU time of each matching process."""
        self.start = self._snapshot()

    def seconds(self) -> tuple[float, float]:
        """PostgreSQL's and Redis's CPU seconds used since begin() (new processes from zero)."""
        pg = redis = 0.0
        for pid, (value, is_redis) in self._snapshot().items():
            used = value - self.start.get(pid, (0.0, is_redis))[0]
            if is_redis:
                redis += used
            else:
                pg += used
        return pg, redis


def start_receiver() -> Child:
    """Start the bench's webhook receiver (bench/receiver.py) on a free port."""
    port = free_port()
    child = Child("receiver", [sys.executable, "-m", "bench.receiver", "--port", str(port)], dict(os.environ), port)
    child.wait_ready("/stats", 20)
    return child


def start_relay() -> Child:
    """Start the bare relay on a free port."""
    port = free_port()
    child = Child("relay", [sys.executable, "-m", "bench.relay", "--port", str(port)], dict(os.environ), port)
    child.wait_ready("/api/widgets/x/config", 20)
    return child


class Backing:
    """PostgreSQL and Redis for the server: from DATABASE_URL/REDIS_URL, else embedded under var/bench."""

    def __init__(self) -> None:
        self.embedded = None
        self.database_url = ""
        self.redis_url = ""
        self.source = ""

    def start(self) -> None:
        """Resolve the URLs, starting the embedded servers once if needed."""
        database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
        if not (database_url and redis_url):
            from amoiq_chat.embedded import EmbeddedServers

            VAR.mkdir(parents=True, exist_ok=True)
            VAR.chmod(0o700)    # it is also XDG_RUNTIME_DIR of the embedded servers, which must be private
            self.embedded = EmbeddedServers(VAR)
            got_db, got_redis = self.embedded.start(not database_url, not redis_url)
            database_url, redis_url = database_url or got_db, redis_url or got_redis
        self.source = "embedded" if self.embedded else "environment"
        self.database_url = with_database(database_url, BENCH_DATABASE)
        self.redis_url = with_redis_db(redis_url, BENCH_REDIS_DB)
        self._admin_url = database_url

    def reset(self) -> None:
        """Drop and recreate the bench database; empty the bench Redis database."""
        import psycopg2
        import redis

        conn = psycopg2.connect(self._admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {BENCH_DATABASE}")
        conn.close()
        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.close()

    def stop(self) -> None:
        """Stop the embedded servers if this object started them."""
        if self.embedded is not None:
            self.embedded.stop()


def start_server(name: str, backing: Backing, jwt_secret: str, settings: dict[str, str] | None = None,
                 workers: int | None = None) -> Child:
    """Start one `amoiq-chat serve` process (with `workers`, a supervisor of that many) on a free port,
    rate limits raised, no demo seed; the assistant off unless `settings` (environment variables) turn it on."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": backing.database_url, "REDIS_URL": backing.redis_url,
           "JWT_SECRET": jwt_secret, "SEED_DEMO": "0", "RATE_LIMIT_HTTP": HIGH_LIMIT, "RATE_LIMIT_AUTH": HIGH_LIMIT,
           "RATE_LIMIT_WS": HIGH_LIMIT, "LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING"),
           "HOST": "127.0.0.1", "WEBHOOK_ALLOW_PRIVATE": "1",   # the webhook runs' receiver is on loopback
           # every load comes from this one address: its thousands of sockets are not a flood
           "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
           "BOT_ENABLED": "0", **(settings or {})}
    checkout = server_checkout()
    if checkout != ROOT:
        env["PYTHONPATH"] = str(checkout / "src")
    argv = [sys.executable, "-m", "amoiq_chat", "serve", "--port", str(port)] + (["--workers", str(workers)] if workers else [])
    child = Child(name, argv, env, port)
    child.wait_ready("/api/health", 90)
    return child


class Tenant:
    """The bench's tenant, widget and agents (with their JWTs), made directly in the database."""

    def __init__(self) -> None:
        self.tenant_id = self.site_key = self.publishable_key = ""
        self.agent_ids: list[str] = []
        self.agent_tokens: list[str] = []

    async def create(self, pool, jwt_secret: str, agents: int) -> "Tenant":
        """Create a tenant with its admin, one widget and `agents` agents."""
        from amoiq_chat import db
        from amoiq_chat.credentials import issue_token, random_id
        from amoiq_chat.services.tenants import create_tenant_with_admin
        from amoiq_chat.settings import Settings

        suffix = secrets.token_hex(4)
        made = await create_tenant_with_admin(pool, username=f"bench_{suffix}", email=f"bench_{suffix}@bench.local",
                                              password=secrets.token_urlsafe(12), name="Bench")
        self.tenant_id, self.publishable_key = made.tenant_id, made.publishable_key
        self.site_key = random_id("widget")
        async with db.transaction(pool) as conn:
            await db.execute(conn, "INSERT INTO widget_configs (tenant_id, user_id, site_key, business_name)"
                             " VALUES (%s, %s, %s, %s)", (self.tenant_id, made.admin["id"], self.site_key, "Bench"))
            rows = await db.fetch_all(
                conn,
                "INSERT INTO agents (tenant_id, username, email, password_hash, full_name)"
                " SELECT %s, 'bench_agent_' || %s || '_' || i, 'bench_agent_' || %s || '_' || i || '@bench.local',"
                " 'not-a-hash', 'Bench Agent ' || i FROM generate_series(1, %s) AS i RETURNING id",
                (self.tenant_id, suffix, suffix, agents))
        settings = Settings().replace(jwt_secret=jwt_secret)
        self.agent_ids = [str(row["id"]) for row in rows]
        self.agent_tokens = [issue_token(settings, subject=agent_id, role="agent", tenant_id=self.tenant_id)
                             for agent_id in self.agent_ids]
        return self


async def add_webhook(pool, tenant_id: str, url: str) -> None:
    """Give the tenant one webhook endpoint (message.created) at `url`."""
    from amoiq_chat import db
    from amoiq_chat.services.webhook_http import new_secret

    async with pool.acquire() as conn:
        await db.execute(conn, "INSERT INTO webhooks (tenant_id, url, secret) VALUES (%s, %s, %s)",
                         (tenant_id, url, new_secret()))


async def xlen(redis_client) -> int:
    """Entries ever added to the webhook stream (0 when it does not exist): its length would shrink when
    the server's webhook worker trims what every consumer has settled."""
    try:
        info = await redis_client.xinfo_stream(WEBHOOK_STREAM)
    except ResponseError:  # no stream yet
        return 0
    return int(info.get("entries-added", info["length"]))


async def pg_commits(pool) -> int:
    """Transactions committed in the bench database so far (PostgreSQL's statistics, up to ~1 s late)."""
    from amoiq_chat import db

    async with pool.acquire() as conn:
        await db.execute(conn, "SELECT pg_stat_clear_snapshot()")
        row = await db.fetch_one(conn, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return int(row["xact_commit"])


async def analyze(pool) -> None:
    """ANALYZE the tables a load fills, as autovacuum would do some time later."""
    from amoiq_chat import db

    async with pool.acquire() as conn:
        await db.execute(conn, "ANALYZE sessions, messages, webhook_outbox")


async def verify(pool, redis_client, session_prefix: str, sent: int, xlen_before: int, settle: float = 5.0) -> dict:
    """Check that each measured message is stored exactly once and appended to the webhook stream, and has
    an outbox row where its tenant has an endpoint for it (the bench never sets WEBHOOK_URL; servers before
    2026-12-02 wrote one for every message)."""
    from amoiq_chat import db

    deadline = time.monotonic() + settle
    while True:
        async with pool.acquire() as conn:
            row = await db.fetch_one(
                conn,
                "SELECT count(*) AS stored, count(DISTINCT (session_id, client_message_id)) AS distinct_ids,"
                " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant_id = m.tenant_id"
                "                  AND w.active AND w.events ? 'message.created')) AS hooked,"
                " (SELECT count(*) FROM webhook_outbox o JOIN messages w ON w.id = o.message_id"
                "  WHERE w.session_id LIKE %(like)s AND w.client_message_id LIKE 'm%%') AS outbox"
                " FROM messages m WHERE session_id LIKE %(like)s AND client_message_id LIKE 'm%%'",
                {"like": session_prefix + "-%"})
        appended = await xlen(redis_client) - xlen_before
        hooked = int(row["hooked"])
        done = row["stored"] >= sent and row["outbox"] >= hooked and appended >= sent
        if done or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    stored, distinct = int(row["stored"]), int(row["distinct_ids"])
    return {"expected": sent, "stored": stored, "duplicates": stored - distinct, "outbox_rows": int(row["outbox"]),
            "outbox_expected": hooked, "stream_appended": appended,
            "ok": stored == sent and distinct == stored and int(row["outbox"]) >= hooked and appended >= sent}
