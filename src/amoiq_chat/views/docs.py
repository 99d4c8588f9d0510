"""GET /api/openapi.json (built once per process from the routes) and the Swagger UI page at /api/docs.

The page's assets come from the swagger-ui-py package (nothing is fetched from the internet);
its own script is a file here, not inline, so the page's CSP can forbid inline scripts.
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..apidoc import describe
from ..appkeys import API_DOCUMENT
from ..jsonutil import dumps
from ..openapi import build_spec

routes = web.RouteTableDef()
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'")
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "application/javascript",
          "favicon-32x32.png": "image/png"}
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>amoiq-chat API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"""
INIT_JS = """window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
"""


def assets_dir() -> Path:
    """Swagger UI's files, as the swagger-ui-py package ships them."""
    from swagger_ui.utils import SWAGGER_UI_PY_ROOT

    return SWAGGER_UI_PY_ROOT / "static"


@routes.get("/api/openapi.json", name="openapi")
@describe("docs", answers={200: "application/json"})
async def openapi_document(request: web.Request) -> web.Response:
    """This API's OpenAPI 3.1 document (REST routes, security schemes, and `x-websockets` for the sockets)."""
    cache = request.app[API_DOCUMENT]
    if not cache:
        cache.append(dumps(build_spec(request.app)))
    return web.Response(body=cache[0], content_type="application/json")


@routes.get("/api/docs", name="docs")
@describe("docs", answers={200: "text/html"})
async def docs_page(request: web.Request) -> web.Response:
    """The API's documentation page (Swagger UI over /api/openapi.json)."""
    return web.Response(text=PAGE, content_type="text/html", headers={"Content-Security-Policy": DOCS_CSP})


@routes.get("/api/docs/{asset}", name="docs_asset")
@describe(hidden=True)
async def docs_asset(request: web.Request) -> web.StreamResponse:
    """A file of the documentation page."""
    name = request.match_info["asset"]
    if name == "init.js":
        return web.Response(text=INIT_JS, content_type="application/javascript")
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(assets_dir() / name, headers={"Content-Type": ASSETS[name],
                                                           "Cache-Control": "public, max-age=86400"})
