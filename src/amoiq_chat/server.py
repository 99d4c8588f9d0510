"""A serving process: its app and HTTP server are built in one place (`start_server`), for `serve`
in one process and for each worker of `serve --workers N` (supervisor.py)."""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from typing import Coroutine, Sequence

from aiohttp import web

from .settings import Settings

log = logging.getLogger("amoiq_chat")

# Seconds in-flight requests get to finish once a process is told to stop (sockets get 1001 first).
SHUTDOWN_TIMEOUT = 10.0


async def _settle_heap(app: web.Application) -> None:
    gc.collect()
    gc.freeze()


async def start_server(settings: Settings, sockets: Sequence[socket.socket] | None = None) -> web.AppRunner:
    """Build the app and its server, start them, and listen: on `sockets` (bound by the supervisor,
    shared by its workers) or on settings.host:port. The caller stops it with `runner.cleanup()`."""
    from .app import create_app

    from .edge import EdgeLimits, GuardedRunner

    app = create_app(settings)
    app.on_startup.append(_settle_heap)
    # The edge: per-address connection cap, header deadline and size, early 413, parser errors in
    # the envelope, WebSocket masks, the open-file limit raised (edge/).
    runner = GuardedRunner(app, EdgeLimits.from_settings(settings), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    try:
        await runner.setup()
        if sockets is None:
            sites: list[web.BaseSite] = [web.TCPSite(runner, settings.host, settings.port)]
        else:
            sites = [web.SockSite(runner, sock) for sock in sockets]
        for site in sites:
            await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve(settings: Settings) -> None:
    """Serve in this process until SIGTERM or SIGINT, then shut down gracefully (sockets get 1001, tasks stop).

    Not `web.run_app`: it raises GracefulExit from the signal callback, and a signal arriving
    at the wrong moment left a worker waiting for ever with the loop stopped under its tasks
    (seen with uvloop, about once in 20 starts and stops). Here the signal only sets an event,
    and the shutdown runs as ordinary code of the main task.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = await start_server(settings)
    try:
        log.info("serving on http://%s:%d", settings.host, settings.port)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's where it is installed (not on Windows)."""
    try:
        import uvloop
    except ImportError:  # optional: Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine) -> None:
    """Run `main` to completion on a new event loop (uvloop's where installed)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main)
