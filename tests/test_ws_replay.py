"""Replays are paged: a socket that asks for a long history gets it all, in order, a page at a time,
without the server holding it all unsent (past the send buffer limit it would drop the peer as slow)."""
from __future__ import annotations

import asyncio
import socket

from amoiq_chat import credentials
from amoiq_chat.appkeys import DB, SETTINGS, SOCKETS, WRITER
from amoiq_chat.services.batches import Draft
from amoiq_chat.settings import RateLimit

from .chat_fixtures import make_tenant, recv, until


async def test_a_replay_of_400_large_messages_arrives_in_bounded_pages(aiohttp_client, make_app):
    # 400 messages of 8 KB make ~3.3 MB of frames: three times the send buffer allowed here.
    client = await aiohttp_client(make_app(ws_send_buffer=1024 * 1024, rate_limit_ws=RateLimit(1000, 1)))
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    resp = await client.post("/api/chat/session", json={"tenantId": tenant.id, "siteKey": tenant.site_key},
                             headers=tenant.bearer())
    sid = (await resp.json())["sessionId"]
    texts = [f"{n:04d}" + "x" * 8000 for n in range(400)]
    await asyncio.gather(*(app[WRITER].submit(Draft(tenant.id, sid, "visitor", text)) for text in texts))
    token = credentials.issue_token(app[SETTINGS], subject=sid, role=credentials.VISITOR, tenant_id=tenant.id, sid=sid)
    ws = await client.ws_connect(f"/ws/{sid}?token={token}")
    assert (await recv(ws))["type"] == "connection_status"
    # Kernel buffers of 64 KiB on both ends: what the server has not sent waits in its own memory.
    (conn,) = app[SOCKETS]
    conn._transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    ws._response.connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    await ws.send_json({"type": "sync", "since": 0})  # 25 bytes asking for ~3.3 MB
    seqs = []
    while len(seqs) < 400:
        frame = await recv(ws)
        if frame["type"] == "meta_message_created":
            seqs.append(frame["message"]["seq"])
            assert frame["message"]["text"] == texts[len(seqs) - 1]
    assert seqs == list(range(1, 401))
    await ws.send_json({"type": "message", "text": "still connected"})
    assert (await until(ws, "ack"))["seq"] == 401
    await ws.close()
