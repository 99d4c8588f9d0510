"""GET /api/openapi.json and /api/docs: the document validates, lists every route, and is made
from the schemas the handlers validate with (issue 17)."""
from __future__ import annotations

import re

import pytest
from aiohttp import web
from openapi_spec_validator import validate as validate_spec

from amoiq_chat.apidoc import describe
from amoiq_chat.openapi import UndescribedRoutes, build_spec, described_routes
from amoiq_chat.schemas import AgentSchema, WidgetSchema
from amoiq_chat.ws.agent import agent_frames
from amoiq_chat.ws.visitor import visitor_frames

# Every route the seeds name (SPEC section 4), with the path parameters left unnamed. The ones
# of the support workflow come with their own branch: each is checked once the router has it.
SEED_ROUTES = [
    ("POST", "/webchat/message"), ("POST", "/api/chat/messages"), ("GET", "/api/chat/messages"),
    ("POST", "/api/chat/anonymous-token"), ("POST", "/api/chat/session"), ("GET", "/api/chat/online-users"),
    ("POST", "/api/auth/register"), ("POST", "/api/auth/login"), ("POST", "/api/auth/agent-login"),
    ("GET", "/api/auth/me"), ("GET", "/api/widgets"), ("POST", "/api/widgets"), ("GET", "/api/widgets/{}"),
    ("PUT", "/api/widgets/{}"), ("DELETE", "/api/widgets/{}"), ("GET", "/api/widgets/{}/config"),
    ("GET", "/api/widgets/stats/overview"), ("POST", "/api/widgets/escalate/{}/{}"),
    ("GET", "/api/widgets/sessions/{}/messages"), ("GET", "/api/widgets/queue-position/{}/{}"),
    ("GET", "/api/widgets/{}/queue-stats"), ("GET", "/api/agents/stats"), ("GET", "/api/agents/waiting-sessions"),
    ("GET", "/api/agents/active-chats"), ("GET", "/api/health"),
]
ON_THIS_BRANCH = 20  # the seed routes above that exist without the support workflow
PARAM = re.compile(r"\{[^}]*\}")


def unnamed(path: str) -> str:
    return PARAM.sub("{}", path)


@pytest.fixture
async def document(client) -> dict:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


async def test_document_is_valid_openapi_3_1(document):
    validate_spec(document)
    assert document["openapi"] == "3.1.0"


async def test_document_lists_every_route_of_the_app_and_of_the_seeds(client, document):
    documented = {(m.upper(), unnamed(p)) for p, item in document["paths"].items() for m in item}
    documented |= {("GET", unnamed(p)) for p in document["x-websockets"]}
    served = {(r.method, unnamed(r.resource.canonical)) for r in client.app.router.routes()
              if r.method not in ("HEAD", "OPTIONS") and r.resource.canonical != "/api/docs/{asset}"}
    assert served == documented
    seeds_served = [route for route in SEED_ROUTES if route in served]
    assert len(seeds_served) >= ON_THIS_BRANCH
    assert set(seeds_served) <= documented


async def test_a_route_without_a_description_fails(make_app):
    app = make_app()

    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    @describe("x")
    async def no_docstring(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/undocumented", undocumented)
    app.router.add_get("/api/no-docstring", no_docstring)
    with pytest.raises(UndescribedRoutes) as caught:
        list(described_routes(app))
    assert "GET /api/undocumented" in str(caught.value) and "GET /api/no-docstring" in str(caught.value)
    with pytest.raises(UndescribedRoutes):
        build_spec(app)


async def test_bodies_are_the_handlers_schemas_with_errors_and_security(document):
    schemas = document["components"]["schemas"]
    create = document["paths"]["/api/agents"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AgentSchema"}
    agent = schemas["AgentSchema"]
    assert set(agent["properties"]) == set(AgentSchema().load_fields) and agent["additionalProperties"] is False
    assert set(agent["required"]) == {"username", "email", "password", "full_name"}
    assert create["security"] == [{"adminJWT": []}]
    for status in ("400", "401", "403", "409", "413", "429", "500"):
        assert create["responses"][status]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/ErrorEnvelope"}, status
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AgentAnswer"}
    # A partial update: the same fields, none required.
    update = document["paths"]["/api/widgets/{site_key}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(update["properties"]) == set(WidgetSchema().load_fields) and "required" not in update
    assert {"adminJWT", "agentJWT", "visitorJWT", "publishableKey", "secretKey"} == \
        set(document["components"]["securitySchemes"])
    history = document["paths"]["/api/chat/messages"]["get"]
    assert {p["name"] for p in history["parameters"] if p["in"] == "query"} == \
        {"tenantId", "sessionId", "userId", "before", "limit"}
    assert len(history["security"]) == 4
    assert set(schemas["ErrorEnvelope"]["required"]) == {"success", "message", "error", "code", "errors", "details"}


async def test_websocket_frames_come_from_the_frame_registries(document):
    sockets = document["x-websockets"]
    for path, registry in (("/ws/{sessionId}", visitor_frames), ("/ws/agent/{agentId}", agent_frames)):
        receives = sockets[path]["receives"]
        assert set(receives) == set(registry.handlers)
        for frame_type, ref in receives.items():
            name = ref["$ref"].rsplit("/", 1)[1]
            schema = registry.handlers[frame_type][0]
            assert set(document["components"]["schemas"][name]["properties"]) == set(schema.load_fields)
        assert "error" in sockets[path]["sends"] and "token" in sockets[path]["query"]
    assert "message" in sockets["/ws/{sessionId}"]["receives"]


async def test_docs_page_loads_swagger_ui_and_the_document_from_this_server(client):
    resp = await client.get("/api/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    page = await resp.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/api/docs/") for a in assets)  # nothing from elsewhere
    for asset in assets:
        got = await client.get(asset)
        assert got.status == 200, asset
        body = await got.read()
        assert len(body) > 0
        if asset.endswith("swagger-ui-bundle.js"):
            assert b"SwaggerUIBundle" in body and len(body) > 500_000
        if asset.endswith("init.js"):
            assert b'url: "/api/openapi.json"' in body
    assert (await client.get("/api/docs/../../setup.cfg")).status == 404
    assert (await client.get("/api/docs/swagger-ui.js.map")).status == 404
