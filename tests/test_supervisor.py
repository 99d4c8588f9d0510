"""`serve --workers N` supervises: a killed worker is replaced, SIGHUP replaces workers one at a time
without refusing anyone, SIGINT and SIGTERM stop everything gracefully (sockets get 1001)."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp

from amoiq_chat.supervisor import BACKOFF_MAX, backoff

from .chat_fixtures import recv, session_id
from .fault_fixtures import Supervised, health


async def close_frame(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code of the close frame the server sent (None when the connection ended without one). Not
    ws.close_code: that becomes 1006 when the client's reply can no longer be sent."""
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return msg.data
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return None


def test_replacements_that_keep_dying_young_wait_longer_and_longer():
    assert [backoff(n) for n in range(1, 8)] == [0.0, 0.5, 1.0, 2.0, 4.0, BACKOFF_MAX, BACKOFF_MAX]


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(settings, tmp_path):
    server = Supervised(settings, tmp_path / "serve.log")
    try:
        first = server.wait_serving()
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        now = server.wait_serving(without={victim})
        assert victim not in now and len(now) == 2 and now & first == first - {victim}
        assert time.monotonic() - started < 20
        assert all(health(server.url) == 200 for _ in range(10))
        assert f"worker {victim} ended after" in server.log()
    finally:
        code = server.stop()
    assert code == 0, server.log()[-4000:]


def test_sighup_replaces_every_worker_without_refusing_a_request(settings, tmp_path):
    server = Supervised(settings, tmp_path / "serve.log")
    try:
        old = server.wait_serving()
        server.send(signal.SIGHUP)
        answers = []
        deadline = time.monotonic() + 90
        while "reloaded" not in server.log() and time.monotonic() < deadline:
            answers.append(health(server.url, timeout=10))
        assert "reloaded" in server.log(), server.log()[-3000:]
        assert answers and set(answers) == {200}
        new = server.wait_serving(without=old)
        assert not new & old
    finally:
        code = server.stop()
    assert code == 0, server.log()[-4000:]


async def test_sigint_stops_every_worker_gracefully_and_closes_sockets_with_1001(settings, tmp_path):
    server = Supervised(settings, tmp_path / "serve.log")
    try:
        await asyncio.to_thread(server.wait_serving)
        async with aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(f"{server.ws_url}/ws/{session_id()}") for _ in range(6)]
            for ws in sockets:
                assert (await recv(ws))["status"] == "connected"
            workers = server.worker_pids()
            server.send(signal.SIGINT)
            codes = await asyncio.gather(*(close_frame(ws) for ws in sockets))
        code = await asyncio.to_thread(server.process.wait, 45)
    finally:
        stopped = server.stop()
    assert codes == [1001] * 6, server.log()[-4000:]
    assert code == 0 == stopped, server.log()[-4000:]
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)
    assert "Traceback" not in server.log()
