"""Hostile requests at the application: control characters outside bodies, log lines, media types,
common passwords, tokens in URLs and the agent socket's Origin."""
from __future__ import annotations

import fnmatch
import logging
from importlib import resources

import aiohttp
import pytest
from setuptools.config.setupcfg import read_configuration

from amoiq_chat.credentials import common_passwords

from .chat_fixtures import make_tenant
from .conftest import ROOT
from .factories import bearer, expect, expect_error, register_admin, unique
from amoiq_chat.appkeys import DB, SETTINGS


async def test_nul_and_control_characters_outside_the_body_are_400_naming_where(client):
    admin = await register_admin(client)
    cases = [
        ("/api/widgets/widget-%00x", "path.site_key"),
        ("/api/widgets/widget-%0Ax/config", "path.site_key"),
        ("/api/widgets/sessions/abc%00defgh/messages", "path.sessionId"),
        (f"/api/chat/messages?tenantId={admin.tenant_id}&userId=a%00b", "query.userId"),
        ("/api/chat/online-users?tenantId=t%01", "query.tenantId"),
        ("/api/widgets?page=1%00", "query.page"),
    ]
    for path, field in cases:
        resp = await client.get(path, headers=admin.headers)
        body = await expect_error(resp, 400, "VALIDATION_ERROR")
        assert field in body["errors"], (path, body)


async def test_a_newline_in_a_path_does_not_forge_a_log_line(aiohttp_client, make_app, caplog):
    app = make_app()

    async def boom(request):
        raise RuntimeError("unexpected")

    app.router.add_get("/api/_boom/{tail}", boom)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.DEBUG):
        for path in ("/api/x%0A2026-01-01 INFO forged", "/api/_boom/x%0A2026-01-01 INFO forged",
                     "/api/widgets/x%0D%0A2026-01-01 INFO forged"):
            assert (await client.get(path)).status in (400, 401, 404)
        await expect_error(await client.get("/api/_boom/x y"), 500, "INTERNAL_ERROR")
    assert not [r.getMessage() for r in caplog.records if "\n" in r.getMessage() or "\r" in r.getMessage()]
    assert any("'/api/_boom/x y'" in r.getMessage() for r in caplog.records)  # quoted, as %r does


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_json_is_415(client, content_type):
    admin = await register_admin(client)
    headers = {**admin.headers, **({"Content-Type": content_type} if content_type else {})}
    resp = await client.post("/api/widgets", data=b'{"business_name": "Shop"}', headers=headers)
    await expect_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE")
    resp = await client.post("/api/widgets", json={"business_name": "Shop"}, headers=admin.headers)
    await expect(resp, 201)
    resp = await client.post("/api/widgets", data=b'{"business_name": "Shop"}',
                             headers={**admin.headers, "Content-Type": "application/json; charset=utf-8"})
    await expect(resp, 201)


@pytest.mark.parametrize("password", ["password", "Password", "12345678", "qwertyuiop", "short"])
async def test_short_and_common_passwords_are_refused(client, password):
    name = unique("owner")
    resp = await client.post("/api/auth/register",
                             json={"username": name, "email": f"{name}@example.com", "password": password})
    body = await expect_error(resp, 400, "VALIDATION_ERROR")
    assert "password" in body["errors"]
    admin = await register_admin(client)
    resp = await client.post("/api/agents", headers=admin.headers, json={
        "username": name, "email": f"{name}@example.com", "password": password, "full_name": "A"})
    assert "password" in (await expect_error(resp, 400, "VALIDATION_ERROR"))["errors"]


def test_the_common_password_list_ships_in_the_package():
    assert "password" in common_passwords() and len(common_passwords()) > 200
    assert resources.files("amoiq_chat").joinpath("data/common-passwords.txt").is_file()
    patterns = read_configuration(ROOT / "setup.cfg")["options"]["package_data"]["amoiq_chat"]
    assert any(fnmatch.fnmatch("data/common-passwords.txt", p) for p in patterns)


async def test_the_agent_socket_checks_origin_against_cors_origins(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(cors_origins=("https://console.example.com",)))
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    agent = tenant.agents[0]
    path = f"/ws/agent/{agent['id']}?token={agent['token']}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(path, headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    own = f"http://{client.server.host}:{client.server.port}"
    for headers in ({}, {"Origin": "https://console.example.com"}, {"Origin": own}):
        ws = await client.ws_connect(path, headers=headers)
        assert (await ws.receive_json(timeout=5))["type"] == "connection_status"
        await ws.close()
    resp = await client.get(path, headers={"Origin": "https://evil.example"})
    assert (await expect_error(resp, 403, "FORBIDDEN"))["errors"] == {"origin": "not allowed"}


async def test_a_token_in_the_url_is_refused_by_rest_but_taken_by_sockets(client):
    admin = await register_admin(client)
    await expect_error(await client.get(f"/api/widgets?token={admin.token}"), 401, "UNAUTHORIZED")
    ws = await client.ws_connect(f"/ws/agent/{admin.id}?token={admin.token}")
    assert (await ws.receive_json(timeout=5))["type"] == "connection_status"
    await ws.close()
    await expect(await client.get("/api/widgets", headers=bearer(admin.token)), 200)
