"""NUL and other control characters are a 400 naming the field (or an error frame), never a 500 and
never a failed batch for the other senders (found by the fuzz run, issue 17)."""
from __future__ import annotations

from amoiq_chat.appkeys import DB, SETTINGS

from .chat_fixtures import collect, make_tenant, recv, session_id, until
from .factories import expect, expect_error, fetch, register_admin


async def test_widget_fields_with_nul_are_refused_and_nothing_written(client, db_conn):
    admin = await register_admin(client)
    for body, field in [({"business_name": "Shop\u0000"}, "business_name"),
                        ({"business_name": "Shop", "faq": [{"keywords": ["a\u0001"], "answer": "b"}]}, "faq.0.keywords.0"),
                        ({"business_name": "Shop", "prechat_fields": [{"name": "x", "type": "text", "label": "\u007f"}]},
                         "prechat_fields.0.label")]:
        await expect_error(await client.post("/api/widgets", json=body, headers=admin.headers), 400,
                           "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT count(*) FROM widget_configs WHERE tenant_id = %s", admin.tenant_id) == [(0,)]
    # Tabs and line breaks are text.
    await expect(await client.post("/api/widgets", json={"business_name": "Shop", "welcome_message": "Hi\n\tthere\r\n"},
                                   headers=admin.headers), 201)


async def test_messages_with_nul_are_refused_over_http_and_sockets(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    body = {"tenantId": tenant.id, "sessionId": session_id(), "siteKey": tenant.site_key, "text": "a\u0000b"}
    await expect_error(await client.post("/webchat/message", json=body, headers=tenant.bearer()), 400,
                       "VALIDATION_ERROR", "text")
    ws = await client.ws_connect(f"/ws/{session_id()}")
    assert (await recv(ws))["type"] == "connection_status"
    await ws.send_json({"type": "join", "siteKey": tenant.site_key})
    await until(ws, "connection_status")
    await ws.send_json({"type": "message", "text": "bad\u0000", "clientMessageId": "c1"})
    await ws.send_json({"type": "message", "text": "good", "clientMessageId": "c2"})
    error = await until(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and error["clientMessageId"] == "c1" and "text" in error["errors"]
    ack = (await collect(ws, "ack"))["ack"]
    assert ack["clientMessageId"] == "c2" and ack["seq"] == 1
    await ws.close()
