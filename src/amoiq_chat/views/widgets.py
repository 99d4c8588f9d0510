"""Widget management (seed 004): list, create, read, change, delete, stats, and the public config."""
from __future__ import annotations

import hashlib

from aiohttp import web

from ..responses import widgets as out
from ..apidoc import describe
from ..auth import authenticate
from ..credentials import ADMIN, SECRET_KEY, Principal
from ..http import json_response, read_json, validate
from ..jsonutil import dumps, iso
from ..appkeys import DB, PUBLIC_WIDGETS
from ..schemas import PageSchema, WidgetSchema, load_changes
from ..services import stats, widgets

routes = web.RouteTableDef()
# Admins and server-to-server secret keys manage widgets; agents and visitors may not.
MANAGERS = (ADMIN, SECRET_KEY)
CONFIG_CACHE = "public, max-age=60"


def widget_json(row: dict) -> dict:
    """A widget in the seed's shape, plus allowed_domains, faq and updated_at."""
    return {
        "id": row["id"], "site_key": row["site_key"], "business_name": row["business_name"],
        "widget_title": row["widget_title"], "welcome_message": row["welcome_message"],
        "primary_color": row["primary_color"], "secondary_color": row["secondary_color"],
        "position": row["position"], "enable_prechat_form": row["enable_prechat_form"],
        "prechat_fields": row["prechat_fields"], "allowed_domains": row["allowed_domains"], "faq": row["faq"],
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]), "is_active": row["is_active"],
    }


def config_json(row: dict) -> dict:
    """What the widget script needs on a customer's page (camelCase, as the seed)."""
    return {
        "businessName": row["business_name"], "widgetTitle": row["widget_title"],
        "welcomeMessage": row["welcome_message"], "primaryColor": row["primary_color"],
        "secondaryColor": row["secondary_color"], "position": row["position"],
        "enablePrechatForm": row["enable_prechat_form"], "prechatFields": row["prechat_fields"],
        "siteKey": row["site_key"], "tenantId": row["tenant_id"],
    }


def _user_id(principal: Principal) -> int | None:
    return int(principal.subject) if principal.role == ADMIN else None


def _widget_answer(message: str, row: dict, status: int = 200) -> web.Response:
    return json_response({"success": True, "message": message, "data": {"widget": widget_json(row)}}, status=status)


@routes.get("/api/widgets", name="widgets")
@describe("widgets", auth=MANAGERS, query=PageSchema, answers={200: out.WidgetsAnswer})
async def list_widgets(request: web.Request) -> web.Response:
    """One page of the tenant's widgets, the tenant's stats and the pagination."""
    principal = await authenticate(request, allow=MANAGERS)
    query = validate(PageSchema, dict(request.query))
    rows, figures = await widgets.list_widgets(request.app[DB], principal.tenant_id, query["page"], query["limit"])
    return json_response({"success": True, "data": {
        "widgets": [widget_json(r) for r in rows],
        "stats": figures,
        "pagination": {"page": query["page"], "limit": query["limit"], "total": figures["total_widgets"]},
    }})


@routes.post("/api/widgets", name="widgets")
@describe("widgets", auth=MANAGERS, body=WidgetSchema, answers={201: out.WidgetChanged})
async def create_widget(request: web.Request) -> web.Response:
    """Create a widget; unspecified fields take the seed's defaults."""
    principal = await authenticate(request, allow=MANAGERS)
    body = validate(WidgetSchema, await read_json(request))
    row = await widgets.create_widget(request.app[DB], principal.tenant_id, _user_id(principal), body)
    return _widget_answer("Widget created successfully", row, status=201)


@routes.get("/api/widgets/stats/overview", name="widget_stats")
@describe("widgets", auth=MANAGERS, answers={200: out.WidgetStatsAnswer})
async def stats_overview(request: web.Request) -> web.Response:
    """The tenant's figures, computed from stored rows."""
    principal = await authenticate(request, allow=MANAGERS)
    figures = await stats.tenant_stats(request.app[DB], principal.tenant_id)
    return json_response({"success": True, "data": {"stats": figures}})


@routes.get("/api/widgets/{site_key}", name="widget")
@describe("widgets", auth=MANAGERS, answers={200: out.WidgetAnswer})
async def get_widget(request: web.Request) -> web.Response:
    """One widget of the tenant."""
    principal = await authenticate(request, allow=MANAGERS)
    row = await widgets.get_widget(request.app[DB], principal.tenant_id, request.match_info["site_key"])
    return json_response({"success": True, "data": {"widget": widget_json(row)}})


@routes.put("/api/widgets/{site_key}", name="widget")
@describe("widgets", auth=MANAGERS, body=WidgetSchema, partial=True, answers={200: out.WidgetChanged})
async def update_widget(request: web.Request) -> web.Response:
    """Change the given fields of a widget."""
    principal = await authenticate(request, allow=MANAGERS)
    changes = load_changes(WidgetSchema, await read_json(request))
    row = await widgets.update_widget(request.app[DB], request.app[PUBLIC_WIDGETS], principal.tenant_id,
                                      request.match_info["site_key"], changes)
    return _widget_answer("Widget updated successfully", row)


@routes.delete("/api/widgets/{site_key}", name="widget")
@describe("widgets", auth=MANAGERS, answers={200: out.Done})
async def delete_widget(request: web.Request) -> web.Response:
    """Delete a widget and its conversations."""
    principal = await authenticate(request, allow=MANAGERS)
    await widgets.delete_widget(request.app[DB], request.app[PUBLIC_WIDGETS], principal.tenant_id,
                                request.match_info["site_key"])
    return json_response({"success": True, "message": "Widget deleted successfully"})


@routes.get("/api/widgets/{site_key}/config", name="widget_config")
@describe("widgets", answers={200: out.WidgetConfigOut, 304: None}, errors=(403,),
          headers={"Origin": "the embedding page (403 when the widget does not allow it)",
                   "If-None-Match": "an ETag from an earlier answer (304 when unchanged)"})
async def widget_config(request: web.Request) -> web.Response:
    """Public: the configuration of an active widget, with an ETag (304 when unchanged)."""
    row = await widgets.public_widget(request.app[DB], request.app[PUBLIC_WIDGETS], request.match_info["site_key"],
                                      request.headers.get("Origin"))
    body = dumps(config_json(row))
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": CONFIG_CACHE, "Vary": "Origin"}
    if etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers, content_type="application/json")
