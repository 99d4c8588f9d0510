"""The `amoiq-chat` command: serve, migrate, create-admin."""
from __future__ import annotations

import argparse
import gc
import asyncio
import logging
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

from . import db
from .logs import setup_logging
from .metrics import multiprocess_metrics
from .settings import ConfigError, Settings, ensure_jwt_secret, load_settings

log = logging.getLogger("amoiq_chat")


@contextmanager
def resolved(settings: Settings) -> Iterator[Settings]:
    """Yield settings with database/redis URLs and JWT secret set, embedded servers running if needed."""
    embedded = None
    if settings.embedded:
        from .embedded import EmbeddedServers

        embedded = EmbeddedServers(settings.var_path)
        database_url, redis_url = embedded.start(not settings.database_url, not settings.redis_url)
        settings = settings.replace(database_url=settings.database_url or database_url,
                                    redis_url=settings.redis_url or redis_url)
    try:
        yield ensure_jwt_secret(settings)
    finally:
        if embedded is not None:
            embedded.stop()


async def _with_pool(settings: Settings, work=None):
    """Migrate, then run `work(pool)` if given; return (migrations applied, work's result)."""
    pool = await db.create_pool(settings.database_url, 1, 2)
    try:
        applied = await db.migrate(pool)
        return applied, (await work(pool) if work is not None else None)
    finally:
        pool.close()
        await pool.wait_closed()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    applied, _ = asyncio.run(_with_pool(settings))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    """Create a tenant with its admin; print the tenant id and its keys."""
    from psycopg2.errors import UniqueViolation

    from .services.tenants import create_tenant_with_admin

    if len(args.password) < 8:
        print("error: the password must have at least 8 characters", file=sys.stderr)
        return 2
    username = args.username or args.email.split("@")[0]
    try:
        _, tenant = asyncio.run(_with_pool(settings, lambda pool: create_tenant_with_admin(
            pool, username=username, email=args.email, password=args.password)))
    except UniqueViolation:
        print("error: that username or e-mail is already registered", file=sys.stderr)
        return 1
    print(f"tenant id:        {tenant.tenant_id}")
    print(f"admin:            {tenant.admin['email']} (username {tenant.admin['username']})")
    print(f"publishable key:  {tenant.publishable_key}")
    print(f"secret key:       {tenant.secret_key}   (shown this once)")
    return 0


async def seed_demo(pool) -> str | None:
    """On an empty database, create a demo tenant, admin, agent and widget; return what to print."""
    from .services import demo

    return await demo.seed_if_empty(pool)


async def _settle_heap(app) -> None:
    gc.collect()
    gc.freeze()


async def _serve(settings: Settings, reuse_port: bool) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (sockets get 1001, tasks stop).

    Not `web.run_app`: it raises GracefulExit from the signal callback, and a signal arriving
    at the wrong moment left a worker waiting for ever with the loop stopped under its tasks
    (seen with uvloop, about once in 20 starts and stops of `serve --workers 2`). Here the
    signal only sets an event, and the shutdown runs as ordinary code of the main task.
    """
    from aiohttp import web

    from .app import create_app

    app = create_app(settings)
    app.on_startup.append(_settle_heap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        await site.start()
        log.info("serving on http://%s:%d", settings.host, settings.port)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def _serve_one(settings: Settings, reuse_port: bool) -> None:
    try:
        import uvloop
    except ImportError:  # optional: Windows
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(settings, reuse_port))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve HTTP and WebSockets; with --workers N, N processes on one port."""
    settings = settings.replace(host=args.host or settings.host, port=args.port if args.port is not None else settings.port)
    _, printed = asyncio.run(_with_pool(settings, seed_demo if settings.seed_demo else None))
    if printed:
        print(printed, flush=True)
    workers = args.workers or 1
    if workers == 1 and not os.environ.get("AMOIQ_REUSE_PORT"):
        _serve_one(settings, reuse_port=False)
        return 0
    if os.environ.get("AMOIQ_REUSE_PORT"):
        _serve_one(settings, reuse_port=True)
        return 0
    env = {**os.environ, "AMOIQ_REUSE_PORT": "1", "DATABASE_URL": settings.database_url,
           "REDIS_URL": settings.redis_url, "JWT_SECRET": settings.jwt_secret,
           "HOST": settings.host, "PORT": str(settings.port), "SEED_DEMO": "0"}
    with multiprocess_metrics(env):
        return _supervise(env, workers, settings)


def _supervise(env: dict[str, str], workers: int, settings: Settings) -> int:
    """Run `workers` processes serving one port; forward SIGTERM/SIGINT; return the worst exit code."""
    children = [subprocess.Popen([sys.executable, "-m", "amoiq_chat", "serve"], env=env) for _ in range(workers)]
    log.info("started %d worker processes on %s:%d", workers, settings.host, settings.port)

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="amoiq-chat", description="Self-hostable live-chat backend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the REST and WebSocket API")
    serve.add_argument("--host", help="address to listen on (default from HOST / config)")
    serve.add_argument("--port", type=int, help="port to listen on (default from PORT / config)")
    serve.add_argument("--workers", type=int, default=1, help="number of processes sharing the port")
    sub.add_parser("migrate", help="apply pending database migrations")
    admin = sub.add_parser("create-admin", help="create a tenant and its admin, print its keys")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument("--username")
    return parser


COMMANDS = {"serve": cmd_serve, "migrate": cmd_migrate, "create-admin": cmd_create_admin}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `amoiq-chat`."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        with resolved(settings) as ready:
            return COMMANDS[args.command](ready, args)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # start-up failures: a clear line, not a traceback
        from .embedded import EmbeddedError

        if isinstance(exc, (EmbeddedError, ConnectionError, OSError)) or type(exc).__module__.startswith("psycopg2"):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise

