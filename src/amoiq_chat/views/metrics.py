"""GET /metrics: the Prometheus text format, for configured networks (METRICS_NETWORKS, loopback by
default) or a caller with `Authorization: Bearer <METRICS_TOKEN>`."""
from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from ..apidoc import describe
from ..appkeys import METRICS, SETTINGS
from ..errors import Forbidden
from ..metrics import CONTENT_TYPE
from ..middlewares import client_ip

routes = web.RouteTableDef()


def may_scrape(request: web.Request) -> bool:
    """True for a caller from a configured network, or one presenting the metrics token."""
    settings = request.app[SETTINGS]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if settings.metrics_token and scheme.lower() == "bearer" and \
            hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode()):
        return True
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in network for network in settings.metrics_networks)


@routes.get("/metrics", name="metrics")
@describe("operations", answers={200: "text/plain"}, errors=(403,))
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of every worker process (only for METRICS_NETWORKS or with the METRICS_TOKEN)."""
    if not may_scrape(request):
        raise Forbidden("Metrics are served to configured networks or with the metrics token")
    body = request.app[METRICS].exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
