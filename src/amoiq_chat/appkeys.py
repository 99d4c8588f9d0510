"""Every `web.AppKey` of the application, in one place."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import aiopg
import redis.asyncio as aioredis
from aiohttp import web

from .metrics import Metrics
from .ratelimit import WindowCounters
from .settings import Settings

if TYPE_CHECKING:
    from .assets import Asset
    from .bus import Bus
    from .services.chat import ChatHooks
    from .services.presence import Presence
    from .services.replies import ReplyTasks
    from .services.support import Support
    from .services.widgets import PublicWidgets
    from .services.writer import MessageWriter
    from .ws.hub import Hub
    from .workers.queue import QueueWorker
    from .workers.webhooks import WebhookWorker
    from .ws.sequencer import ReplaySource
    from .ws.transport import Socket

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", aiopg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
# Every open WebSocket of this process (its ws.connection.Connection, from start() to stop()):
# pinged by the heartbeat, closed with 1001 on shutdown.
SOCKETS: web.AppKey[set[Socket]] = web.AppKey("sockets")
STARTED_AT = web.AppKey("started_at", float)
PUBLIC_WIDGETS: web.AppKey[PublicWidgets] = web.AppKey("public_widgets")  # widget rows kept for the public config
RATE_COUNTERS = web.AppKey("rate_counters", WindowCounters)  # the HTTP rate limit's windows, counted per loop tick
ASSETS: web.AppKey[dict[str, Asset]] = web.AppKey("assets")  # the front ends' files (widget, console, demo page)
# Background workers of this process by name -> "is it running?" (GET /api/health/ready asks each).
WORKERS: web.AppKey[dict[str, Callable[[], bool]]] = web.AppKey("workers")
API_DOCUMENT: web.AppKey[list[bytes]] = web.AppKey("api_document")  # the OpenAPI document, encoded once when first asked
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")  # this process's Prometheus metrics (metrics.py)

# Per-request storage.
REQUEST_ID = web.RequestKey("request_id", str)
REQUEST_STARTED = web.RequestKey("request_started", float)  # time.monotonic() when the middleware got it
RATE_LIMIT_HEADERS = web.RequestKey("rate_limit_headers", dict)
PRINCIPAL = web.RequestKey("principal", object)  # auth.Principal


# The chat: message writer, Redis bus, local hub of sockets, presence, hooks (see ws/, services/).
WRITER: web.AppKey[MessageWriter] = web.AppKey("writer")
BUS: web.AppKey[Bus] = web.AppKey("bus")
HUB: web.AppKey[Hub] = web.AppKey("hub")
REPLAY: web.AppKey[ReplaySource] = web.AppKey("replay")  # where sockets read the messages they missed
PRESENCE: web.AppKey[Presence] = web.AppKey("presence")
CHAT_HOOKS: web.AppKey[ChatHooks] = web.AppKey("chat_hooks")
WEBHOOK_WORKER: web.AppKey[WebhookWorker] = web.AppKey("webhook_worker")  # delivers webhooks; sends test pings

# The support workflow: escalation, queue, assignment, ratings; the assistant's replies; the recalculator.
SUPPORT: web.AppKey[Support] = web.AppKey("support")
REPLIES: web.AppKey[ReplyTasks] = web.AppKey("replies")
QUEUE_WORKER: web.AppKey[QueueWorker] = web.AppKey("queue_worker")
