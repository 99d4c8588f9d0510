"""Graceful shutdown: open WebSockets are closed with 1001 Going Away."""
import asyncio

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from amoiq_chat.keys import SOCKETS


async def test_shutdown_closes_sockets_with_going_away(make_app):
    app = make_app()

    async def socket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        async for _ in ws:
            pass
        return ws

    app.router.add_get("/ws/_probe", socket)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        ws = await client.ws_connect("/ws/_probe")
        closing = asyncio.ensure_future(client.server.close())
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == WSCloseCode.GOING_AWAY
        await ws.close()
        await asyncio.wait_for(closing, 10)
    finally:
        await client.close()
