"""The error envelope of SPEC section 3, from the router, the body reader and unknown errors."""
import asyncio
import logging
import secrets

import pytest
from aiohttp import web

from amoiq_chat.http import json_response, read_json
from amoiq_chat.settings import RateLimit

ENVELOPE_KEYS = {"success", "message", "error", "code", "errors", "details"}


def assert_envelope(body, code):
    assert set(body) >= ENVELOPE_KEYS
    assert body["success"] is False and body["code"] == code
    assert body["message"] == body["error"] and body["message"]
    assert isinstance(body["errors"], dict) and isinstance(body["details"], dict)


@pytest.fixture
async def probe_client(aiohttp_client, make_app):
    """An app with two extra routes: one echoing JSON, one failing unexpectedly."""
    app = make_app(max_body_bytes=1024)

    async def echo(request):
        return json_response({"got": await read_json(request)})

    async def boom(request):
        raise RuntimeError("secret internals at /srv/app.py line 3")

    app.router.add_post("/api/_echo", echo)
    app.router.add_get("/api/_boom", boom)
    return await aiohttp_client(app)


async def test_unknown_route_is_404_envelope(client):
    resp = await client.get("/api/nothing-here")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert_envelope(await resp.json(), "NOT_FOUND")


async def test_wrong_method_is_405_envelope(client):
    resp = await client.delete("/api/health")
    assert resp.status == 405
    body = await resp.json()
    assert_envelope(body, "METHOD_NOT_ALLOWED")
    assert "GET" in resp.headers["Allow"]


@pytest.mark.parametrize("raw, field", [(b"{not json", "body"), (b"[1, 2]", "body"), (b"", "body")])
async def test_bad_json_is_400_naming_the_body(probe_client, raw, field):
    resp = await probe_client.post("/api/_echo", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    body = await resp.json()
    assert_envelope(body, "VALIDATION_ERROR")
    assert field in body["errors"]


async def test_oversized_body_is_413(probe_client):
    resp = await probe_client.post("/api/_echo", data=b'{"a": "' + b"x" * 4096 + b'"}',
                                   headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert_envelope(await resp.json(), "PAYLOAD_TOO_LARGE")


async def test_unhandled_exception_is_500_without_traceback(probe_client, caplog):
    with caplog.at_level(logging.ERROR, logger="amoiq_chat.middlewares"):
        resp = await probe_client.get("/api/_boom", headers={"X-Request-ID": "req-42"})
    assert resp.status == 500
    text = await resp.text()
    assert "secret internals" not in text and "Traceback" not in text
    body = await resp.json()
    assert_envelope(body, "INTERNAL_ERROR")
    assert body["details"]["requestId"] == "req-42" == resp.headers["X-Request-ID"]
    assert any("req-42" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_security_headers_on_every_response(client):
    for resp in (await client.get("/api/health"), await client.get("/missing")):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-XSS-Protection"] == "1; mode=block"
        assert "Content-Security-Policy" in resp.headers and "Referrer-Policy" in resp.headers


async def test_concurrent_requests_each_get_their_own_place_in_the_window(aiohttp_client, make_app):
    # Requests arriving together are counted together (one Redis call per loop tick); each still gets
    # its own place: the remaining counts are all different and exactly the limit's worth are served.
    ip, other_ip = (f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}" for _ in range(2))
    client = await aiohttp_client(make_app(rate_limit_http=RateLimit(5, 3600), trusted_proxies=("127.0.0.1",)))
    headers = {"X-Forwarded-For": f"{ip}, 127.0.0.1"}
    other = {"X-Forwarded-For": f"{other_ip}, 127.0.0.1"}  # another client in the same ticks: a window of its own
    answers = await asyncio.gather(*(client.get("/api/nope", headers=other if n % 4 == 3 else headers)
                                      for n in range(12)))
    mine = [r for n, r in enumerate(answers) if n % 4 != 3]
    assert sorted(r.status for r in mine) == [404] * 5 + [429] * 4
    assert sorted(r.headers["X-RateLimit-Remaining"] for r in mine if r.status == 404) == ["0", "1", "2", "3", "4"]
    theirs = [r for n, r in enumerate(answers) if n % 4 == 3]
    assert sorted(r.headers["X-RateLimit-Remaining"] for r in theirs) == ["2", "3", "4"]


async def test_http_rate_limit_is_shared_and_announced(aiohttp_client, make_app):
    # A forwarded address unique to this run, so other runs on the same Redis do not count.
    ip = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    # Two apps stand for two processes; an hour-long window keeps the count in one window.
    limit = dict(rate_limit_http=RateLimit(3, 3600), trusted_proxies=("127.0.0.1",))
    first = await aiohttp_client(make_app(**limit))
    second = await aiohttp_client(make_app(**limit))
    headers = {"X-Forwarded-For": f"{ip}, 127.0.0.1"}
    seen = []
    for c in (first, second, first):
        resp = await c.get("/api/nope", headers=headers)
        seen.append((resp.status, resp.headers["X-RateLimit-Remaining"]))
        assert resp.headers["X-RateLimit-Limit"] == "3"
    assert [s for s, _ in seen] == [404, 404, 404]
    assert [r for _, r in seen] == ["2", "1", "0"]
    resp = await second.get("/api/nope", headers=headers)
    assert resp.status == 429
    assert_envelope(await resp.json(), "RATE_LIMIT_EXCEEDED")
    assert int(resp.headers["Retry-After"]) >= 1
    # Health is never counted.
    assert (await first.get("/api/health", headers=headers)).status == 200
