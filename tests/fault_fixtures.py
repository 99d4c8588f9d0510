"""Helpers of the supervisor and fault tests: a supervised server of our own, its workers, health."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from amoiq_chat.settings import Settings

from .conftest import CLI, cli_env, free_port, wait_for_port


def children(pid: int) -> set[int]:
    """The direct child processes of `pid` (Linux /proc)."""
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def health(url: str, timeout: float = 3.0) -> int:
    """The status code of GET /api/health (0 when nothing answered)."""
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Supervised:
    """`amoiq-chat serve --workers N` (`serve` alone with workers=None) against the test services (or
    the given Redis), logging to a file."""

    def __init__(self, settings: Settings, log_path: Path, *, workers: int | None = 2, host: str = "127.0.0.1",
                 **env: str) -> None:
        self.host, self.port = host, free_port()
        self.log_path = log_path
        env = {"RATE_LIMIT_HTTP": "100000/60", "RATE_LIMIT_AUTH": "100000/60", "RATE_LIMIT_WS": "1000/1",
               "LOG_LEVEL": "INFO", **env}
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*CLI, "serve", "--host", host, "--port", str(self.port), *(["--workers", str(workers)] if workers else [])],
                env=cli_env(settings, **env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers = workers

    @property
    def url(self) -> str:
        """The base HTTP URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The base WebSocket URL."""
        return f"ws://{self.host}:{self.port}"

    def log(self) -> str:
        """What the supervisor and its workers logged so far."""
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The supervisor's worker processes now."""
        return children(self.process.pid)

    def wait_answering(self, timeout: float = 60.0) -> "Supervised":
        """Block until /api/health answers 200."""
        deadline = time.monotonic() + timeout
        while health(self.url) != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.url} not serving:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        return self

    def wait_serving(self, timeout: float = 60.0, without: set[int] = frozenset()) -> set[int]:
        """Block until every worker serves (one "serving" line per worker pid, none of `without`); their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the supervisor exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            pids = self.worker_pids() - set(without)
            log = self.log()
            if len(pids) == self.workers and all(f"worker {pid} serving" in log for pid in pids):
                return pids
            time.sleep(0.1)
        raise TimeoutError(f"workers not serving after {timeout} s:\n{self.log()[-3000:]}")

    def send(self, signum: int) -> None:
        """Send the supervisor a signal."""
        self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 45.0) -> int | str:
        """Stop it with `signum`; its exit code, or what went wrong (then everything is killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return f"still running {timeout} s after {signal.Signals(signum).name}"
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the supervisor and its workers at once (nothing of ours outlives a test)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)


class OwnRedis:
    """A redis-server of our own on a free port, which a test may kill and start again empty."""

    def __init__(self) -> None:
        from amoiq_chat.embedded import _redis_binary

        self.port = free_port()
        self.args = [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = self.start()

    @property
    def url(self) -> str:
        """Its URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> subprocess.Popen:
        """Start it (empty) and wait until it accepts connections."""
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)
        return self.process

    def kill(self) -> None:
        """SIGKILL it: every client's connection drops, the data goes."""
        self.process.kill()
        self.process.wait(10)

    def restart_empty(self) -> None:
        """Kill it, then start it again, empty."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Stop it for good."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def __enter__(self) -> "OwnRedis":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

