"""Errors -> envelope, request ids, HTTP rate limits, security headers."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time

from aiohttp import web

from .errors import (ApiError, Forbidden, InternalError, MethodNotAllowed, NotFound, PayloadTooLarge,
                     RateLimited, Unauthorized, ValidationError)
from .http import check_request_text, json_response
from .outages import unexpected
from .appkeys import METRICS, RATE_COUNTERS, RATE_LIMIT_HEADERS, REQUEST_ID, REQUEST_STARTED, SETTINGS

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "Referrer-Policy": "no-referrer",
}
# Not counted by the HTTP rate limit.
UNLIMITED_PATHS = frozenset({"/api/health", "/api/health/live", "/api/health/ready", "/metrics"})
HTTP_ERRORS = {400: ValidationError, 401: Unauthorized, 403: Forbidden, 404: NotFound,
               405: MethodNotAllowed, 413: PayloadTooLarge, 429: RateLimited}


def error_response(exc: ApiError, request_id: str | None = None) -> web.Response:
    """The SPEC's envelope for an ApiError."""
    headers = dict(exc.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return json_response(exc.body(), status=exc.status, headers=headers)


def from_http_exception(exc: web.HTTPException, request: web.Request) -> ApiError:
    """Map aiohttp's own errors (router 404/405, body size 413, ...) to ApiErrors."""
    kind = HTTP_ERRORS.get(exc.status)
    if exc.status == 404:
        return NotFound(f"Not found: {request.method} {request.path}")
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        return MethodNotAllowed(f"Method {request.method} not allowed on {request.path}",
                                details={"allowed": allowed}, headers={"Allow": ",".join(allowed)})
    if kind is not None:
        return kind(exc.text or exc.reason)
    if exc.status >= 500:
        return InternalError()
    return ApiError(exc.reason, status=exc.status, code="VALIDATION_ERROR")


@web.middleware
async def gateway_middleware(request: web.Request, handler) -> web.StreamResponse:
    """The request id, the HTTP rate limit, then the handler; every failure becomes the envelope,
    unknown ones logged with the request id. One middleware, not one per concern: a WebSocket's
    request keeps its middlewares' frames (and aiohttp's wrapper of each) for the socket's life."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    request[REQUEST_STARTED] = time.monotonic()
    try:
        check_request_text(request)
        await check_rate_limit(request)
        response = await handler(request)
    except ApiError as exc:
        return error_response(exc, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(from_http_exception(exc, request), request_id)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        error = unexpected(exc, log, f"{request.method} {request.path!r} [request {request_id}]")
        error.details["requestId"] = request_id
        return error_response(error, request_id)
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
    return response


def client_ip(request: web.Request) -> str:
    """The caller's address; X-Forwarded-For is believed only from trusted proxies."""
    remote = request.remote or "unknown"
    trusted = request.app[SETTINGS].trusted_proxies
    if remote not in trusted:
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote
    return remote


async def check_rate_limit(request: web.Request) -> None:
    """Fixed-window limit per client IP, shared by all processes through Redis: RateLimited when over."""
    if request.path in UNLIMITED_PATHS or request.headers.get("Upgrade", "").lower() == "websocket" or request.method == "OPTIONS":
        return
    settings = request.app[SETTINGS]
    is_auth = request.path.startswith("/api/auth/")
    limit = settings.rate_limit_auth if is_auth else settings.rate_limit_http
    now = time.time()
    window = int(now // limit.seconds)
    key = f"ratelimit:{'auth' if is_auth else 'http'}:{client_ip(request)}:{window}"
    try:
        count = await request.app[RATE_COUNTERS].hit(key, limit.seconds + 1)
    except Exception as exc:  # Redis down: serve rather than refuse everybody
        log.warning("rate limit check skipped: %s", exc)
        return
    reset = (window + 1) * limit.seconds
    headers = {
        "X-RateLimit-Limit": str(limit.count),
        "X-RateLimit-Remaining": str(max(0, limit.count - count)),
        "X-RateLimit-Reset": str(reset),
    }
    request[RATE_LIMIT_HEADERS] = headers
    if count > limit.count:
        retry = max(1, int(reset - now + 0.999))
        request.app[METRICS].rate_limited.labels("auth" if is_auth else "http").inc()
        raise RateLimited(headers={**headers, "Retry-After": str(retry)})


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: security and rate-limit headers on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    for name, value in request.get(RATE_LIMIT_HEADERS, {}).items():
        response.headers.setdefault(name, value)
