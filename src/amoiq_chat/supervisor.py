"""`serve --workers N`: gunicorn's arbiter keeps N worker processes on one listening socket.

The supervising process binds the port once and forks the workers; each builds its app and
server with `server.start_server` on the shared socket. A worker that dies is replaced (at once
after a long life, with a doubling delay when replacements keep dying young); SIGTERM and
SIGINT stop every worker gracefully (its sockets get 1001, in-flight requests their grace
period); SIGHUP replaces the workers one at a time (a new one first, then an old one stops
gracefully), the socket staying open throughout; SIGTTIN/SIGTTOU add or remove a worker.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

from aiohttp.worker import GunicornWebWorker
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from .server import SHUTDOWN_TIMEOUT, new_event_loop, start_server
from .settings import Settings

log = logging.getLogger(__name__)

# A worker that dies within this many seconds of its start died young: the next replacement waits.
YOUNG = 10.0
# The wait before the next replacement after the 2nd, 3rd, ... young death in a row doubles from
# BACKOFF_FIRST up to BACKOFF_MAX seconds (a worker that cannot start while PostgreSQL is down).
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
# Seconds the supervisor waits for a stopping worker before it kills it: the worker's own
# shutdown (sockets closed, requests' grace period, the writer's queue, presence) fits in it.
GRACEFUL_TIMEOUT = int(SHUTDOWN_TIMEOUT * 3)
# A worker whose event loop does not run for this long is killed and replaced.
HUNG_TIMEOUT = 30


def backoff(young_deaths: int) -> float:
    """The wait before replacing a worker after `young_deaths` young deaths in a row (0 for the first)."""
    if young_deaths <= 1:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (young_deaths - 2))


class Worker(GunicornWebWorker):
    """One supervised process: `start_server` on the supervisor's socket, until told to stop."""

    def init_process(self) -> None:
        """A fresh event loop after the fork (uvloop's where installed), then gunicorn's set-up and run."""
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        super(GunicornWebWorker, self).init_process()

    def run(self) -> None:
        """Serve; a replacement that cannot start exits as a crash (the supervisor tries again later),
        while a worker of the first start that cannot start stops the supervisor, as gunicorn does."""
        try:
            super().run()
        except Exception as exc:
            if self.age <= self.cfg.workers:
                raise
            log.error("worker %d could not start: %r", os.getpid(), exc, exc_info=exc)
            sys.exit(1)

    async def _run(self) -> None:
        runner = await start_server(self.app.settings, self.sockets)
        self.booted = True
        log.info("worker %d serving", os.getpid())
        try:
            while self.alive:
                self.notify()  # the supervisor's sign of life: a hung loop is killed and replaced
                if self.ppid != os.getppid():
                    log.warning("worker %d: the supervisor is gone; stopping", os.getpid())
                    break
                await self._wait_next_notify()
        finally:
            await runner.cleanup()

    def handle_exit(self, sig, frame) -> None:
        """SIGTERM: stop gracefully, now rather than at the next sign of life."""
        super().handle_exit(sig, frame)
        self._notify_waiter_done()


class Supervisor(Arbiter):
    """gunicorn's arbiter, with a logged, growing delay between replacements of workers that keep
    dying young, and SIGINT (Ctrl-C) as graceful as SIGTERM."""

    def __init__(self, app: BaseApplication) -> None:
        super().__init__(app)
        self._born: dict[int, float] = {}
        self._retiring: set[int] = set()
        self._young_deaths = 0
        self._not_before = 0.0

    def handle_int(self) -> None:
        """SIGINT stops gracefully, like SIGTERM (a second one during the stop hurries it)."""
        raise StopIteration

    def handle_hup(self) -> None:
        """SIGHUP: replace the workers one at a time, each old one stopped gracefully once its
        replacement serves; the listening socket stays open throughout (nothing is refused)."""
        old = sorted(self.WORKERS.items(), key=lambda item: item[1].age)
        log.info("reloading: replacing %d workers one at a time", len(old))
        for pid, _ in old:
            if not self._serving(self.spawn_worker()):
                log.error("reloading stopped: a new worker did not start; the others keep serving")
                return
            if pid in self.WORKERS:
                self.kill_worker(pid, signal.SIGTERM)
        log.info("reloaded")

    def _serving(self, pid: int) -> bool:
        """Wait until a new worker gives its first sign of life (it serves), False if it dies first."""
        worker = self.WORKERS[pid]
        first = worker.tmp.last_update()
        deadline = time.monotonic() + HUNG_TIMEOUT
        while time.monotonic() < deadline:
            self.reap_workers()
            if pid not in self.WORKERS:
                return False
            if worker.tmp.last_update() != first:
                return True
            time.sleep(0.1)
        return False

    def spawn_worker(self):
        """Fork a worker; remember when, to tell a young death from an old one."""
        pid = super().spawn_worker()
        self._born[pid] = time.monotonic()
        return pid

    def spawn_workers(self) -> None:
        """Replace missing workers, once the delay after young deaths has passed."""
        if time.monotonic() >= self._not_before:
            super().spawn_workers()

    def kill_worker(self, pid: int, sig: int) -> None:
        """Signal a worker; one told to stop is retiring, and its end is no death."""
        if sig in (signal.SIGTERM, signal.SIGQUIT):
            self._retiring.add(pid)
        super().kill_worker(pid, sig)

    def reap_workers(self) -> None:
        """Collect ended workers; log each unexpected death and when its replacement comes."""
        before = set(self.WORKERS)
        try:
            super().reap_workers()
        finally:
            for pid in before - set(self.WORKERS):
                self._ended(pid)

    def _ended(self, pid: int) -> None:
        born = self._born.pop(pid, None)
        if pid in self._retiring:
            self._retiring.discard(pid)
            return
        now = time.monotonic()
        lived = now - born if born is not None else YOUNG
        self._young_deaths = self._young_deaths + 1 if lived < YOUNG else 1
        delay = backoff(self._young_deaths)
        self._not_before = now + delay
        log.warning("worker %d ended after %.1f s; a new one starts %s", pid, lived,
                    f"in {delay:.1f} s" if delay else "now")


class Application(BaseApplication):
    """The gunicorn application of `serve --workers N`: resolved settings, N workers of `Worker`."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        super().__init__()

    def load_config(self) -> None:
        """gunicorn's settings, from ours."""
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        options = {
            "bind": [f"{host}:{self.settings.port}"], "workers": self.workers, "worker_class": Worker,
            "graceful_timeout": GRACEFUL_TIMEOUT, "timeout": HUNG_TIMEOUT, "proc_name": "amoiq-chat",
            "loglevel": self.settings.log_level.lower(), "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Settings:
        """What a worker loads: the settings (it builds its own app with them)."""
        return self.settings

    def run(self) -> None:
        """Supervise until stopped; exits the process (gunicorn's arbiter ends with sys.exit)."""
        Supervisor(self).run()


def supervise(settings: Settings, workers: int) -> None:
    """Serve with `workers` supervised processes on settings.host:port until SIGTERM or SIGINT."""
    log.info("supervising %d worker processes on %s:%d", workers, settings.host, settings.port)
    Application(settings, workers).run()
