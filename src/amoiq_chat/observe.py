"""The operator's view of traffic: one access line and the request metrics per response, socket
open/close lines and gauges. Called from the response-prepare signal and the socket transport."""
from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from .appkeys import METRICS, REQUEST_ID, REQUEST_STARTED
from .logs import redact_query
from .metrics import kind_label
from .middlewares import client_ip

access_log = logging.getLogger("amoiq_chat.access")
socket_log = logging.getLogger("amoiq_chat.sockets")
UNMATCHED = "<unmatched>"
ABNORMAL_CLOSE = 1006  # no close frame (the peer vanished, or the heartbeat dropped it)


def route_template(request: web.Request) -> str:
    """The route's path template (`/api/widgets/{site_key}`): a bounded set of metric labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


async def observe_response(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: count the request, time it, write its access line."""
    started = request.get(REQUEST_STARTED)
    duration = time.monotonic() - started if started is not None else 0.0
    route = route_template(request)
    metrics = request.app[METRICS]
    metrics.http_requests.labels(request.method, route, str(response.status)).inc()
    metrics.http_latency.labels(request.method, route).observe(duration)
    query = redact_query(request.query_string)
    # Untrusted text: escaped (as %r would), so a newline in a path cannot forge a line of the log.
    path = repr(request.path + ("?" + query if query else ""))[1:-1]
    ip = client_ip(request)
    access_log.info('%s "%s %s" %d %.1fms [%s]', ip, request.method, path, response.status, duration * 1000,
                    request.get(REQUEST_ID, "-"),
                    extra={"method": request.method, "path": path, "route": route, "status": response.status,
                           "duration_ms": round(duration * 1000, 2), "request_id": request.get(REQUEST_ID),
                           "client_ip": ip})


def socket_opened(conn: Any) -> None:
    """A socket started: count it, log it."""
    kind = kind_label(conn.audience)
    conn.app[METRICS].sockets_open.labels(kind).inc()
    socket_log.info("socket %s opened (%s)", conn.id, kind,
                    extra={"socket": conn.id, "kind": kind, "session_id": conn.session_id,
                           "tenant_id": conn.tenant_id, "event": "open"})


def socket_closed(conn: Any) -> None:
    """A socket stopped: count it with its close code, log it."""
    code = conn.ws.close_code or ABNORMAL_CLOSE
    metrics, kind = conn.app[METRICS], kind_label(conn.audience)
    metrics.sockets_open.labels(kind).dec()
    metrics.sockets_closed.labels(kind, str(code)).inc()
    socket_log.info("socket %s closed (%s) with code %d", conn.id, kind, code,
                    extra={"socket": conn.id, "kind": kind, "session_id": conn.session_id,
                           "tenant_id": conn.tenant_id, "close_code": code, "event": "close"})
