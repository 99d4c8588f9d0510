"""The ceiling: a bare aiohttp relay speaking the server's frames, with no storage and no bus."""
from __future__ import annotations

import argparse
import itertools

import orjson
from aiohttp import WSMsgType, web

AGENTS: web.AppKey[dict] = web.AppKey("agents", dict)   # sessionId -> the agent socket that accepted it
IDS: web.AppKey[itertools.count] = web.AppKey("ids", itertools.count)
WIDGET_CONFIG = orjson.dumps({"success": True, "data": {"siteKey": "relay", "widget_title": "Chat with us"}})


async def visitor(request: web.Request) -> web.WebSocketResponse:
    """Answer `join`; ack each visitor `message` and relay it to the agent that accepted the session as `new_message`."""
    session_id, agents, ids = request.match_info["session_id"], request.app[AGENTS], request.app[IDS]
    ws = web.WebSocketResponse(max_msg_size=65536)
    await ws.prepare(request)
    await ws.send_str(orjson.dumps({"type": "connection_status", "status": "connected", "sessionId": session_id}).decode())
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        frame = orjson.loads(msg.data)
        if frame.get("type") == "join":
            await ws.send_str(orjson.dumps({"type": "connection_status", "status": "joined", "sessionId": session_id}).decode())
        if frame.get("type") != "message":
            continue
        message_id = next(ids)
        await ws.send_str(orjson.dumps({"type": "ack", "clientMessageId": frame.get("clientMessageId"), "id": message_id}).decode())
        agent = agents.get(session_id)
        if agent is not None and not agent.closed:
            await agent.send_str(orjson.dumps({"type": "new_message", "sessionId": session_id, "message": {
                "id": message_id, "text": frame.get("message"), "sender": "customer", "sessionId": session_id}}).decode())
    return ws


async def agent(request: web.Request) -> web.WebSocketResponse:
    """Register the agent socket for each session it accepts."""
    agents = request.app[AGENTS]
    ws = web.WebSocketResponse(max_msg_size=65536)
    await ws.prepare(request)
    await ws.send_str(orjson.dumps({"type": "connection_status", "status": "connected"}).decode())
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and (frame := orjson.loads(msg.data)).get("type") == "accept_chat":
            agents[frame["sessionId"]] = ws
            await ws.send_str(orjson.dumps({"type": "chat_accepted", "sessionId": frame["sessionId"],
                                            "messages": [], "fullHistory": True}).decode())
    return ws


async def widget_config(request: web.Request) -> web.Response:
    """A fixed public widget config: the HTTP ceiling."""
    return web.Response(body=WIDGET_CONFIG, content_type="application/json")


def create_relay() -> web.Application:
    """The relay application."""
    app = web.Application()
    app[AGENTS], app[IDS] = {}, itertools.count(1)
    app.router.add_get("/ws/agent/{agent_id}", agent)
    app.router.add_get("/ws/{session_id}", visitor)
    app.router.add_get("/api/widgets/{site_key}/config", widget_config)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="bare aiohttp relay (the bench's ceiling)")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    import uvloop  # the server runs on uvloop too (amoiq_chat.cli)

    uvloop.install()
    web.run_app(create_relay(), host="127.0.0.1", port=port, access_log=None, print=None)
