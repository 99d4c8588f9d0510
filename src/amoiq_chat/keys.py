"""Every `web.AppKey` of the application, in one place."""
from __future__ import annotations

import weakref

import aiopg
import redis.asyncio as aioredis
from aiohttp import web

from .settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", aiopg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
# Every open WebSocket of this process, closed with 1001 on shutdown.
SOCKETS = web.AppKey("sockets", weakref.WeakSet)
STARTED_AT = web.AppKey("started_at", float)

# Per-request storage.
REQUEST_ID = web.RequestKey("request_id", str)
RATE_LIMIT_HEADERS = web.RequestKey("rate_limit_headers", dict)
PRINCIPAL = web.RequestKey("principal", object)  # auth.Principal

