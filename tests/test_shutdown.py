"""Graceful shutdown: open WebSockets are closed with 1001 Going Away."""
import asyncio

from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from .chat_fixtures import recv, session_id


async def test_shutdown_closes_sockets_with_going_away(make_app):
    client = TestClient(TestServer(make_app()))
    await client.start_server()
    try:
        ws = await client.ws_connect(f"/ws/{session_id()}")
        assert (await recv(ws))["status"] == "connected"
        closing = asyncio.ensure_future(client.server.close())
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == WSCloseCode.GOING_AWAY
        await ws.close()
        await asyncio.wait_for(closing, 10)
    finally:
        await client.close()
