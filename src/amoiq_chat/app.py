"""`create_app(settings)`: keys, routes, middlewares and cleanup contexts, in order."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

import aiohttp_cors
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from aiohttp import WSCloseCode, web
from redis.maint_notifications import MaintNotificationsConfig

from . import db
from .bus import Bus
from .appkeys import (API_DOCUMENT, ASSETS, BUS, CHAT_HOOKS, DB, HUB, METRICS, PRESENCE, PUBLIC_WIDGETS, QUEUE_WORKER,
                      RATE_COUNTERS, REDIS, REPLAY, REPLIES, SETTINGS, SOCKETS, STARTED_AT, SUPPORT, WEBHOOK_WORKER, WORKERS,
                      WRITER)
from .assets import load_assets
from .assistant import make_assistant
from .metrics import Metrics
from .observe import observe_response
from .middlewares import add_common_headers, gateway_middleware
from .ratelimit import WindowCounters
from .routes import PUBLIC_ROUTES, setup_routes
from .services import webhooks
from .services.chat import ChatHooks
from .services.messages import Replay
from .services.presence import Presence, new_process_id
from .services.queue import QueueBoard
from .services.replies import ReplyTasks, Responder
from .services.support import Support
from .services.widgets import PublicWidgets
from .services.writer import MessageWriter
from .settings import Settings
from .tasks import cancel_and_wait
from .workers.presence import PresenceWorker
from .workers.queue import QueueWorker
from .workers.webhooks import WebhookWorker
from .ws.heartbeat import Heartbeat
from .ws.hub import Hub

log = logging.getLogger(__name__)


def redis_client(url: str, pool_max: int = 50) -> aioredis.Redis:
    """A Redis client over a bounded pool: a burst (hundreds of sockets closing at once) waits
    up to 10 s for a free connection instead of failing with "Too many connections".

    Maintenance notifications (a managed-Redis feature) are off: with them on, as redis-py 8
    has them by default, the pool hands out idle connections without checking that the
    server has not closed them, and after a Redis restart commands kept failing on the dead
    ones for as long as they stayed in the pool. And a command that still finds its connection
    closed is sent once more on a new one; timeouts are not retried (the command may have run).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=pool_max, timeout=10, socket_connect_timeout=3, health_check_interval=30,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
    return aioredis.Redis.from_pool(pool)


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the pool once, migrate, close on shutdown."""
    settings = app[SETTINGS]
    pool = await db.create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
    try:
        applied = await db.migrate(pool)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        app[DB] = pool
        yield
    finally:
        pool.close()
        await pool.wait_closed()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the Redis client once (checked with PING), close on shutdown."""
    client = redis_client(app[SETTINGS].redis_url, app[SETTINGS].redis_pool_max)
    try:
        await client.ping()
        app[REDIS] = client
        app[RATE_COUNTERS] = WindowCounters(client)
        yield
    finally:
        await client.aclose()


async def chat_ctx(app: web.Application) -> AsyncIterator[None]:
    """The chat's machinery: bus listener, local hub, message writer, presence heartbeat and sweeper."""
    settings, redis = app[SETTINGS], app[REDIS]
    bus = Bus(redis)
    app[BUS] = bus
    app[HUB] = Hub(bus)
    app[REPLAY] = Replay(app[DB])
    app[CHAT_HOOKS] = ChatHooks()
    writer = MessageWriter(app[DB], settings.database_url, redis, bus,
                           queue_max=settings.writer_queue, batch_max=settings.writer_batch,
                           shards=settings.writer_shards, linger=settings.writer_linger_ms / 1000,
                           hook_all=bool(settings.webhook_url))
    app[WRITER] = writer
    presence = Presence(redis, new_process_id(), ttl=settings.presence_ttl)
    app[PRESENCE] = presence
    worker = PresenceWorker(presence, bus)
    heartbeat = Heartbeat(app[SOCKETS], settings.ws_heartbeat)
    metrics = app[METRICS]
    writer.on_batch = metrics.observe_batch
    metrics.watch(metrics.bus_deliveries, lambda: bus.received)
    metrics.watch(metrics.bus_publishes, lambda: bus.published + writer.stored)  # the writer publishes each message once
    metrics.watch(metrics.bus_reconnects, lambda: bus.reconnects)
    app[WORKERS].update({"bus": lambda: bus.connected, "writer": lambda: writer.running,
                         "presence": lambda: worker.running, "heartbeat": lambda: heartbeat.running})
    await bus.start()
    try:
        writer.start()
        try:
            await worker.start()
            heartbeat.start()
            try:
                yield
            finally:
                await heartbeat.stop()
                await worker.stop()
        finally:
            await writer.stop()
    finally:
        await bus.stop()


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The webhook worker (its loops run in this process unless `webhook_delivery` is off)."""
    worker = WebhookWorker(app[DB], app[REDIS], app[SETTINGS])
    app[WEBHOOK_WORKER] = worker
    if app[SETTINGS].webhook_delivery:
        await worker.start()
    try:
        yield
    finally:
        await worker.stop()


async def support_ctx(app: web.Application) -> AsyncIterator[None]:
    """The support workflow: the assistant answering visitors first, the queue and its recalculator."""
    settings = app[SETTINGS]
    support = Support(app[DB], app[BUS], QueueBoard(app[REDIS], app[PRESENCE].process_id), app[WRITER])
    app[SUPPORT] = support
    support.events.append(webhooks.workflow_events(app[DB], app[REDIS]))  # escalated, assigned, closed, rated
    assistant = make_assistant(settings)
    replies = app[REPLIES] = ReplyTasks(settings.ai_reply_concurrency)
    if settings.bot_enabled:
        app[CHAT_HOOKS].after_visitor_message.append(Responder(app[DB], assistant, support, replies).after_visitor_message)
    worker = app[QUEUE_WORKER] = QueueWorker(support, step=settings.queue_step,
                                             refresh=settings.queue_refresh)
    await assistant.start()
    try:
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await replies.stop()
    finally:
        await assistant.close()


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Sync the metrics kept as plain counts every few seconds; at shutdown, once more, then retire this process's gauges."""
    metrics = app[METRICS]
    task = asyncio.create_task(metrics.sync_forever(), name="metrics-sync")
    try:
        yield
    finally:
        await cancel_and_wait(task)
        metrics.sync()
        metrics.process_exited()


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: close every WebSocket with 1001 Going Away, all at once (a silent peer delays no one)."""
    await asyncio.gather(*(conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutdown")
                           for conn in list(app[SOCKETS])), return_exceptions=True)


def setup_cors(app: web.Application, settings: Settings) -> None:
    """Admin/agent UI origins from configuration; public widget routes answer any origin."""
    options = dict(allow_credentials=True, expose_headers="*", allow_headers="*",
                   allow_methods=["GET", "POST", "PUT", "DELETE"], max_age=600)
    cors = aiohttp_cors.setup(app, defaults={o: aiohttp_cors.ResourceOptions(**options) for o in settings.cors_origins})
    public = {"*": aiohttp_cors.ResourceOptions(**{**options, "allow_credentials": False})}
    seen: set[int] = set()
    for route in list(app.router.routes()):
        if route.method in ("HEAD", "OPTIONS") or id(route.resource) in seen or route.resource.canonical.startswith("/ws/"):
            continue
        seen.add(id(route.resource))
        cors.add(route.resource, public if route.resource.name in PUBLIC_ROUTES else None)


def create_app(settings: Settings) -> web.Application:
    """Build the application for already-resolved settings (URLs and JWT secret set)."""
    if not (settings.database_url and settings.redis_url and settings.jwt_secret):
        raise ValueError("create_app needs database_url, redis_url and jwt_secret resolved")
    app = web.Application(
        middlewares=[gateway_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[SOCKETS] = set()
    app[STARTED_AT] = time.time()
    app[PUBLIC_WIDGETS] = PublicWidgets()
    app[ASSETS] = load_assets()
    app[METRICS] = Metrics()
    app[WORKERS] = {}
    app[API_DOCUMENT] = []
    app.cleanup_ctx.append(metrics_ctx)
    app.cleanup_ctx.append(postgres_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(chat_ctx)
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(support_ctx)
    app.on_response_prepare.append(add_common_headers)
    app.on_response_prepare.append(observe_response)
    app.on_shutdown.append(close_sockets)
    setup_routes(app)
    setup_cors(app, settings)
    return app
