"""CORS: admin/agent UI origins from configuration; public routes answer any origin."""
from aiohttp import web

from amoiq_chat.app import setup_cors
from amoiq_chat.http import json_response


async def ok(request):
    return json_response({"ok": True})


async def test_public_route_answers_any_origin(client):
    resp = await client.get("/api/health", headers={"Origin": "https://shop.example"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://shop.example")


async def test_private_routes_answer_configured_origins_only(aiohttp_client, settings):
    app = web.Application()
    app.router.add_get("/api/private", ok, name="private")
    app.router.add_get("/api/health", ok, name="health")  # a PUBLIC_ROUTES name
    setup_cors(app, settings.replace(cors_origins=("https://admin.example",)))
    client = await aiohttp_client(app)

    def preflight(path, origin):
        return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "GET"})

    allowed = await preflight("/api/private", "https://admin.example")
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    refused = await preflight("/api/private", "https://evil.example")
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    public = await preflight("/api/health", "https://evil.example")
    assert public.status == 200
    assert public.headers["Access-Control-Allow-Origin"] in ("*", "https://evil.example")
