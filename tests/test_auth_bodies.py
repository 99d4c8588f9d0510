"""Request bodies on every account, key, tenant and widget route: too large is 413, not an object 400."""
import pytest

from .factories import create_agent, create_widget, expect_error, fetch, register_admin

SNAPSHOT = ("SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM users), (SELECT count(*) FROM agents),"
            " (SELECT count(*) FROM api_keys), (SELECT count(*) FROM widget_configs),"
            " (SELECT max(updated_at) FROM widget_configs), (SELECT max(updated_at) FROM agents),"
            " (SELECT max(updated_at) FROM tenants)")


@pytest.fixture
async def routes(aiohttp_client, make_app):
    """A client whose bodies may be 2 KiB at most, and every route that takes a body."""
    client = await aiohttp_client(make_app(max_body_bytes=2048))
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    widget = await create_widget(client, admin)
    return client, admin, [
        ("POST", "/api/auth/register"), ("POST", "/api/auth/login"), ("POST", "/api/auth/agent-login"),
        ("POST", "/api/agents"), ("PUT", f"/api/agents/{agent.id}"), ("POST", "/api/keys"), ("PUT", "/api/tenant"),
        ("POST", "/api/widgets"), ("PUT", f"/api/widgets/{widget['site_key']}"),
    ]


@pytest.mark.parametrize("raw, status, code", [
    (b'{"business_name": "' + b"x" * 4096 + b'"}', 413, "PAYLOAD_TOO_LARGE"),
    (b"[]", 400, "VALIDATION_ERROR"),
    (b'"text"', 400, "VALIDATION_ERROR"),
    (b"{broken", 400, "VALIDATION_ERROR"),
    (b"", 400, "VALIDATION_ERROR"),
])
async def test_bad_bodies_are_refused_and_write_nothing(routes, db_conn, raw, status, code):
    client, admin, every = routes
    before = fetch(db_conn, SNAPSHOT)
    for method, path in every:
        resp = await client.request(method, path, data=raw,
                                    headers={**admin.headers, "Content-Type": "application/json"})
        body = await expect_error(resp, status, code)
        if status == 400:
            assert "body" in body["errors"], (method, path, body)
    assert fetch(db_conn, SNAPSHOT) == before
