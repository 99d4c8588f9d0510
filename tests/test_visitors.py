"""The one visitor-session service: every route that names a widget applies the same rules."""
from __future__ import annotations

import pytest

from amoiq_chat.appkeys import DB, REDIS, SETTINGS
from amoiq_chat.visitor_schemas import message_text

from .chat_fixtures import make_tenant, session_id


@pytest.fixture
async def shop(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], allowed_domains=["shop.example.com"])
    return client, tenant


def routes(tenant):
    """Each visitor route that names the widget, with a body for a new session."""
    return [
        ("/api/chat/anonymous-token", {"tenantId": tenant.id, "sessionId": session_id(), "siteKey": tenant.site_key}),
        ("/api/chat/session", {"tenantId": tenant.id, "sessionId": session_id(), "siteKey": tenant.site_key}),
        ("/webchat/message", {"tenantId": tenant.id, "sessionId": session_id(), "siteKey": tenant.site_key, "text": "hi"}),
        ("/api/chat/messages", {"tenantId": tenant.id, "sessionId": session_id(), "siteId": tenant.site_key, "text": "hi"}),
    ]


async def test_every_visitor_route_checks_the_origin_against_the_widget(shop, db_conn):
    client, tenant = shop
    for path, body in routes(tenant):
        resp = await client.post(path, json=body, headers={**tenant.bearer(), "Origin": "https://evil.test"})
        answer = await resp.json()
        assert resp.status == 403 and answer["errors"] == {"origin": "not allowed"}, path
        with db_conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM sessions WHERE session_id = %s", (body["sessionId"],))
            assert cur.fetchone() == (0,), path
    for origin in ("https://shop.example.com", None):  # a listed page, or no Origin at all (curl)
        for path, body in routes(tenant):
            headers = {**tenant.bearer(), **({"Origin": origin} if origin else {})}
            assert (await client.post(path, json=body, headers=headers)).status == 200, (path, origin)


async def test_a_token_or_a_session_writes_the_session_cache(shop):
    client, tenant = shop
    for path, body in routes(tenant)[:2]:
        assert (await client.post(path, json=body, headers=tenant.bearer())).status == 200
        assert await client.app[REDIS].get(f"session:{body['sessionId']}") is not None, path


def test_the_text_or_message_rule():
    assert message_text({"text": "  hi "}) == "hi"
    assert message_text({"message": "yo"}) == "yo"
    assert message_text({"text": "", "message": " both "}) == "both"
    assert message_text({}) == ""
