"""The front ends served by the app: the embeddable widget, the agent console, the demo page."""
from __future__ import annotations

import html

from aiohttp import web

from ..apidoc import describe
from ..appkeys import ASSETS, DB, SETTINGS
from ..assets import Asset
from ..errors import NotFound
from ..services import demo

routes = web.RouteTableDef()
# Unversioned URLs (what a site pastes) are checked again after this long; `?v=<version>` never changes.
REVALIDATE = "public, max-age=300"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATION = {"If-None-Match": "the ETag of an earlier answer (304 when unchanged)"}


def _file(request: web.Request, name: str, headers: dict[str, str] | None = None) -> web.Response:
    """A front-end file with its ETag (304 when the browser has it) and its cache lifetime."""
    asset: Asset = request.app[ASSETS][name]
    cache = IMMUTABLE if request.query.get("v") == asset.version else REVALIDATE
    common = {"ETag": asset.etag, "Cache-Control": cache, "X-Amoiq-Version": asset.version, **(headers or {})}
    if asset.etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=common)
    return web.Response(body=asset.body, headers={**common, "Content-Type": asset.content_type})


def _page_policy(request: web.Request, frame_ancestors: str) -> dict[str, str]:
    """Security headers of an HTML page of ours: scripts and styles of this origin only, sockets to it."""
    ws_origin = ("wss://" if request.secure else "ws://") + request.host
    policy = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
              f" connect-src 'self' {ws_origin}; base-uri 'none'; form-action 'none'; frame-ancestors {frame_ancestors}")
    return {"Content-Security-Policy": policy, "X-Frame-Options": "SAMEORIGIN"}


@routes.get("/widget.js", name="widget_js")
@describe("frontend", answers={200: "application/javascript", 304: None}, headers=REVALIDATION)
async def widget_js(request: web.Request) -> web.Response:
    """The embeddable chat widget (any site may load it; CORS answers any origin)."""
    return _file(request, "widget.js")


@routes.get("/console", name="console")
@describe("frontend", answers={200: "text/html", 304: None}, headers=REVALIDATION)
async def console_page(request: web.Request) -> web.Response:
    """The agent console: a single page; the CORS_ORIGINS (the admin/agent UIs) may also frame it."""
    ancestors = " ".join(["'self'", *request.app[SETTINGS].cors_origins])
    return _file(request, "console.html", _page_policy(request, ancestors))


@routes.get("/console.js", name="console_js")
@describe("frontend", answers={200: "application/javascript", 304: None}, headers=REVALIDATION)
async def console_js(request: web.Request) -> web.Response:
    """The console's script."""
    return _file(request, "console.js")


@routes.get("/console.css", name="console_css")
@describe("frontend", answers={200: "text/css", 304: None}, headers=REVALIDATION)
async def console_css(request: web.Request) -> web.Response:
    """The console's styles."""
    return _file(request, "console.css")


@routes.get("/demo", name="demo")
@describe("frontend", answers={200: "text/html"}, errors=(404,))
async def demo_page(request: web.Request) -> web.Response:
    """A local page with the demo widget embedded (only while the demo data is on: SEED_DEMO)."""
    embed = await demo.demo_embed(request.app[DB]) if request.app[SETTINGS].seed_demo else None
    if embed is None:
        raise NotFound("There is no demo widget (the demo data is made by the first `amoiq-chat serve` on an empty database)")
    assets = request.app[ASSETS]
    page = assets["demo.html"].body.decode()
    for mark, value in (("{{SITE_KEY}}", embed["site_key"]), ("{{PUBLISHABLE_KEY}}", embed["public_key"]),
                        ("{{WIDGET_VERSION}}", assets["widget.js"].version)):
        page = page.replace(mark, html.escape(value, quote=True))
    headers = {**_page_policy(request, "'none'"), "Cache-Control": "no-store"}
    return web.Response(text=page, content_type="text/html", headers=headers)
