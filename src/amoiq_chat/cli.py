"""The `amoiq-chat` command: serve, migrate, create-admin."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from . import db, server
from .credentials import password_problem
from .logs import setup_logging
from .metrics import multiprocess_metrics
from .settings import ConfigError, Settings, ensure_jwt_secret, load_settings

log = logging.getLogger("amoiq_chat")


@contextmanager
def resolved(settings: Settings) -> Iterator[Settings]:
    """Yield settings with database/redis URLs and JWT secret set, embedded servers running if needed."""
    embedded, owner = None, os.getpid()
    if settings.embedded:
        from .embedded import EmbeddedServers

        embedded = EmbeddedServers(settings.var_path)
        database_url, redis_url = embedded.start(not settings.database_url, not settings.redis_url)
        settings = settings.replace(database_url=settings.database_url or database_url,
                                    redis_url=settings.redis_url or redis_url)
    try:
        yield ensure_jwt_secret(settings)
    finally:
        if embedded is not None and os.getpid() == owner:  # not in a worker forked from this process
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

    problem = password_problem(args.password)
    if problem:
        print(f"error: the password {problem}", file=sys.stderr)
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


async def seed_demo(pool) -> tuple[str | None, bool]:
    """On an empty database, create a demo tenant, admin, agent and widget; return what to print, and
    whether the demo page has a widget to show."""
    from .services import demo

    return await demo.seed_if_empty(pool), await demo.demo_embed(pool) is not None


def demo_urls(settings: Settings) -> str:
    """The lines that point a newcomer at the demo page and the agent console."""
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.port}"
    return f"Demo page (the demo widget on a web page): {base}/demo\nAgent console: {base}/console"


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve HTTP and WebSockets: in this process, or with --workers N in N supervised processes."""
    settings = settings.replace(host=args.host or settings.host, port=args.port if args.port is not None else settings.port)
    _, seeded = asyncio.run(_with_pool(settings, seed_demo if settings.seed_demo else None))
    printed, has_demo = seeded or (None, False)
    if printed:
        print(printed, flush=True)
    if has_demo:
        print(demo_urls(settings), flush=True)
    if args.workers is None:
        server.run(server.serve(settings))
    else:
        from .supervisor import supervise

        with multiprocess_metrics(os.environ):  # the workers, forked by the supervisor, share the metric files
            supervise(settings, args.workers)
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number >= 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="amoiq-chat", description="Self-hostable live-chat backend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the REST and WebSocket API")
    serve.add_argument("--host", help="address to listen on (default from HOST / config)")
    serve.add_argument("--port", type=int, help="port to listen on (default from PORT / config)")
    serve.add_argument("--workers", type=_positive, help="supervise N worker processes on the port (restarted when they die)")
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

