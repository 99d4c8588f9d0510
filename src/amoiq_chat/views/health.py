"""GET /api/health: the seed's fields plus the state of PostgreSQL and Redis; /api/health/live and
/api/health/ready for orchestrators."""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .. import db
from ..apidoc import describe
from ..http import json_response
from ..jsonutil import now_iso
from ..appkeys import DB, REDIS, SETTINGS, STARTED_AT, WORKERS
from ..responses import Health, Liveness, Readiness

routes = web.RouteTableDef()
CHECK_TIMEOUT = 2.0


async def _probe(check) -> dict:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "down"; the reason is reported
        return {"status": "down", "error": str(exc) or type(exc).__name__}
    return {"status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}


async def _services(app: web.Application) -> tuple[dict, dict]:
    """The state of PostgreSQL (one trivial query through the pool, db.ping) and Redis (PING), probed at once."""

    async def postgres() -> None:
        await db.ping(app[DB])

    async def redis() -> None:
        await app[REDIS].ping()

    pg_state, redis_state = await asyncio.gather(_probe(postgres), _probe(redis))
    return pg_state, redis_state


def _unavailable(message: str) -> dict:
    return {"code": "SERVICE_UNAVAILABLE", "message": message, "error": message, "errors": {}, "details": {}}


@routes.get("/api/health", name="health")
@describe("health", answers={200: Health, 503: Health})
async def health(request: web.Request) -> web.Response:
    """Report liveness and the state of each backing service; 503 when one is down."""
    app = request.app
    settings = app[SETTINGS]
    pg_state, redis_state = await _services(app)
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
        body.update(_unavailable(body["message"]))
    return json_response(body, status=200 if healthy else 503)


@routes.get("/api/health/live", name="health_live")
@describe("health", answers={200: Liveness})
async def live(request: web.Request) -> web.Response:
    """The process is up and its loop answers (touches neither PostgreSQL nor Redis)."""
    return json_response({"success": True, "status": "up",
                          "uptimeSeconds": round(time.time() - request.app[STARTED_AT], 1)})


@routes.get("/api/health/ready", name="health_ready")
@describe("health", answers={200: Readiness, 503: Readiness})
async def ready(request: web.Request) -> web.Response:
    """Ready for traffic: PostgreSQL and Redis answer and every background worker of this process runs; else 503."""
    app = request.app
    pg_state, redis_state = await _services(app)
    stopped = sorted(name for name, running in app[WORKERS].items() if not running())
    if not app[WORKERS]:
        workers = {"status": "down", "error": "not started"}
    elif stopped:
        workers = {"status": "down", "error": "not running: " + ", ".join(stopped)}
    else:
        workers = {"status": "up", "running": sorted(app[WORKERS])}
    checks = {"postgres": pg_state, "redis": redis_state, "workers": workers}
    ok = all(check["status"] == "up" for check in checks.values())
    body = {"success": ok, "status": "ready" if ok else "not ready", "checks": checks}
    if not ok:
        body.update(_unavailable("Not ready: " + ", ".join(k for k, v in checks.items() if v["status"] != "up")))
    return json_response(body, status=200 if ok else 503)
