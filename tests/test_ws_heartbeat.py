"""Heartbeats: the process pings quiet sockets, drops the peers that stop answering, answers pings."""
from __future__ import annotations

import asyncio

import aiohttp

from amoiq_chat.bus import FOR_STAFF
from amoiq_chat.appkeys import DB, SETTINGS, SOCKETS

from .chat_fixtures import make_tenant, recv, session_id, until

INTERVAL = 0.3  # seconds of silence before a ping, in these tests (25 in production)


async def test_a_peer_that_stops_answering_pings_is_dropped_and_goes_offline(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(ws_heartbeat=INTERVAL))
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=0)
    admin = await client.ws_connect(f"/ws/agent/{tenant.admin_id}?token={tenant.admin_token}")  # answers pings
    await until(admin, "connection_status")
    sid = session_id()
    silent = await client.ws_connect(f"/ws/{sid}", autoping=False)
    await recv(silent)
    await silent.send_json({"type": "join", "siteKey": tenant.site_key})
    assert (await until(silent, "connection_status"))["status"] == "joined"
    assert (await until(admin, "user_online"))["sessionId"] == sid

    async def silent_until_dropped() -> tuple[int, aiohttp.WSMsgType]:
        pings = 0
        while True:  # reads but never answers: pings, then the server hangs up
            msg = await silent.receive(timeout=20 * INTERVAL)
            if msg.type is not aiohttp.WSMsgType.PING:
                return pings, msg.type
            pings += 1

    # The admin's client answers pings while it reads (aiohttp does it inside receive()).
    (pings, last), offline = await asyncio.gather(silent_until_dropped(),
                                                  until(admin, "user_offline", timeout=20 * INTERVAL))
    assert pings >= 1 and last in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert offline["sessionId"] == sid
    # The admin answered every ping meanwhile (several intervals): still served.
    await admin.send_json({"type": "get_waiting_sessions"})
    assert (await until(admin, "waiting_sessions"))["type"] == "waiting_sessions"
    assert [conn.audience for conn in client.app[SOCKETS]] == [FOR_STAFF]


async def test_a_peer_answering_pings_stays_and_its_pings_are_answered(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(ws_heartbeat=INTERVAL))
    ws = await client.ws_connect(f"/ws/{session_id()}", autoping=False)
    assert (await recv(ws))["status"] == "connected"
    pings = 0
    while pings < 3:  # three rounds: more than the interval and a half that would drop it
        msg = await ws.receive(timeout=20 * INTERVAL)
        assert msg.type is aiohttp.WSMsgType.PING
        await ws.pong(msg.data)
        pings += 1
    await ws.ping(b"are you there")
    msg = await ws.receive(timeout=20 * INTERVAL)
    while msg.type is aiohttp.WSMsgType.PING:  # a ping of the server's may come first
        await ws.pong(msg.data)
        msg = await ws.receive(timeout=20 * INTERVAL)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"are you there")
    assert not ws.closed
