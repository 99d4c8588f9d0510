"""Visitor and agent sockets on one process: the seed's examples, acks, accept, history."""
from __future__ import annotations

import pytest

from amoiq_chat.appkeys import CHAT_HOOKS, DB, SETTINGS, WRITER
from amoiq_chat.services.batches import Draft

from .chat_fixtures import collect, make_tenant, nothing_more, recv, session_id, until


@pytest.fixture
async def chat(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=2)
    return client, tenant


async def test_seed_visitor_example_stores_and_acks(chat, db_conn):
    client, tenant = chat
    sid = session_id()
    ws = await client.ws_connect(f"/ws/{sid}")
    status = await recv(ws)
    assert status["type"] == "connection_status" and status["status"] == "connected"
    await ws.send_json({"type": "message", "sessionId": sid, "siteKey": tenant.site_key, "message": "Hello!",
                        "timestamp": "2024-01-15T10:30:00Z"})
    got = await collect(ws, "ack", "meta_message_created")
    ack, meta = got["ack"], got["meta_message_created"]
    assert meta["message"]["id"] == ack["id"]
    assert meta["message"]["text"] == "Hello!" and meta["message"]["sender"] == "user"
    with db_conn.cursor() as cur:
        cur.execute("SELECT message, seq, sender_type, tenant_id FROM messages WHERE session_id = %s", (sid,))
        assert cur.fetchall() == [("Hello!", 1, "visitor", tenant.id)]
    await ws.close()


async def test_after_visitor_message_hook_is_the_seam_for_the_assistant(chat):
    client, tenant = chat
    app = client.app
    seen = []

    async def assistant(session, stored):
        seen.append(stored.id)
        await app[WRITER].submit(Draft(session["tenant_id"], session["session_id"], "ai", f"You said: {stored.row['message']}"))

    app[CHAT_HOOKS].after_visitor_message.append(assistant)
    sid = session_id()
    ws = await client.ws_connect(f"/ws/{sid}")
    await recv(ws)
    frame = {"type": "message", "siteKey": tenant.site_key, "message": "pricing?", "clientMessageId": "p-1"}
    await ws.send_json(frame)
    reply = await until(ws, "message")
    assert reply["message"] == "You said: pricing?"
    assert reply["metadata"] == {"agentName": "AI Assistant", "isAI": True}
    await ws.send_json(frame)  # a repeated clientMessageId does not run the hooks again
    assert (await until(ws, "ack"))["duplicate"] is True
    assert len(seen) == 1
    await ws.close()
