"""GET /api/health: the seed's fields plus the state of PostgreSQL and Redis."""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .. import db
from ..http import json_response
from ..jsonutil import now_iso
from ..appkeys import DB, REDIS, SETTINGS, STARTED_AT

routes = web.RouteTableDef()
CHECK_TIMEOUT = 2.0


async def _probe(check) -> dict:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "down"; the reason is reported
        return {"status": "down", "error": str(exc) or type(exc).__name__}
    return {"status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}


@routes.get("/api/health", name="health")
async def health(request: web.Request) -> web.Response:
    """Report liveness and the state of each backing service; 503 when one is down."""
    app = request.app
    settings = app[SETTINGS]

    async def postgres() -> None:
        await db.ping(app[DB])

    async def redis() -> None:
        await app[REDIS].ping()

    pg_state, redis_state = await asyncio.gather(_probe(postgres), _probe(redis))
    healthy = pg_state["status"] == "up" and redis_state["status"] == "up"
    host = request.host or f"{settings.host}:{settings.port}"
    ws_scheme = "wss" if request.scheme == "https" else "ws"
    body = {
        "success": healthy,
        "message": "Chat Widget API is running" if healthy else "Chat Widget API is degraded",
        "timestamp": now_iso(),
        "environment": settings.environment,
        "domain": host.split(":")[0],
        "apiUrl": f"{request.scheme}://{host}/api",
        "wsUrl": f"{ws_scheme}://{host}",
        "uptimeSeconds": round(time.time() - app[STARTED_AT], 1),
        "services": {"postgres": pg_state, "redis": redis_state},
    }
    if not healthy:
        body.update({"code": "SERVICE_UNAVAILABLE", "error": body["message"], "errors": {}, "details": {}})
    return json_response(body, status=200 if healthy else 503)
