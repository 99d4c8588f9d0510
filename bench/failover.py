"""The failover figure: how long a worker's clients go unserved when it dies under `serve --workers 2`.

Visitors (tokenless, joined with the widget's siteKey) each send a message every 0.1 s and wait
for its ack. The worker holding the most of their sockets is SIGKILLed; every client whose socket it cut reconnects at once (and
every 20 ms after a refused attempt), joins again and sends again with the same clientMessageId.
Its figure is the time from the kill to that message's ack. Also: how long until the supervisor
has forked the worker's replacement.
"""
from __future__ import annotations

import asyncio
import functools
import os
import signal
import time

import aiohttp
import orjson
import psutil

from .loadgen import latency_summary
from .target import Backing, start_server

PACE = 0.1  # seconds between one client's messages
RETRY = 0.02  # seconds between reconnection attempts
ACK_TIMEOUT = 5.0


async def _joined(http: aiohttp.ClientSession, base: str, sid: str, site_key: str,
                  secret: str | None) -> tuple[aiohttp.ClientWebSocketResponse, str | None]:
    """A tokenless visitor socket joined to its session (a rejoin proves it with the session's secret,
    SPEC section 12); the socket and the secret."""
    ws = await http.ws_connect(f"{base}/ws/{sid}")
    try:
        join = {"type": "join", "siteKey": site_key, **({"sessionSecret": secret} if secret else {})}
        await ws.send_str(orjson.dumps(join).decode())
        while True:
            frame = orjson.loads((await ws.receive(timeout=ACK_TIMEOUT)).data)
            if frame.get("type") == "error":
                raise ValueError(frame.get("code"))
            if frame.get("joined"):
                return ws, frame.get("sessionSecret") or secret
    except BaseException:
        await ws.close()
        raise


async def _acked(ws: aiohttp.ClientWebSocketResponse, cmid: str) -> None:
    await ws.send_str(orjson.dumps({"type": "message", "message": f"failover {cmid}", "clientMessageId": cmid}).decode())
    while True:
        msg = await ws.receive(timeout=ACK_TIMEOUT)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionResetError(f"socket ended: {msg.type}")
        frame = orjson.loads(msg.data)
        if frame.get("clientMessageId") == cmid:
            if frame["type"] != "ack":
                raise ConnectionResetError(frame.get("code"))
            return


def _sockets(worker: psutil.Process) -> int:
    """How many established TCP connections a worker holds (its clients' sockets)."""
    connections = getattr(worker, "net_connections", None) or worker.connections   # psutil < 6 has only the latter
    return sum(1 for conn in connections(kind="tcp") if conn.status == psutil.CONN_ESTABLISHED and conn.raddr)


async def measure(http: aiohttp.ClientSession, base: str, site_key: str, supervisor_pid: int, clients: int = 40,
                  settle: float = 2.0, timeout: float = 30.0) -> dict:
    """Kill one worker of the supervisor under a load of `clients` visitors; what it cost them."""
    loop = asyncio.get_running_loop()
    prefix = f"failover-{os.getpid()}-{int(time.time())}"
    killed_at: list[float] = []
    served_again: dict[int, float] = {}
    cut: set[int] = set()
    errors: list[str] = []
    stop = asyncio.Event()

    async def client(i: int) -> None:
        sid, n, ws, secret = f"{prefix}-{i}", 0, None, None
        while not stop.is_set():
            try:
                if ws is None or ws.closed:
                    ws, secret = await _joined(http, base, sid, site_key, secret)
                await _acked(ws, f"m{n}")
                if i in cut and i not in served_again:
                    served_again[i] = loop.time() - killed_at[0]
                n += 1
                await asyncio.sleep(PACE)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
                if killed_at:
                    cut.add(i)
                    errors.append(repr(exc)[:120])
                if ws is not None:
                    await ws.close()
                ws = None
                await asyncio.sleep(RETRY)
        if ws is not None:
            await ws.close()

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    try:
        await asyncio.sleep(settle)
        supervisor = psutil.Process(supervisor_pid)
        workers = supervisor.children()
        before = {p.pid for p in workers}
        os.kill(max(workers, key=_sockets).pid, signal.SIGKILL)   # the worker serving the most clients
        killed_at.append(loop.time())
        replaced_s = None
        deadline = killed_at[0] + timeout
        while loop.time() < deadline and (replaced_s is None or len(served_again) < len(cut) or not cut):
            if replaced_s is None and len({p.pid for p in supervisor.children()} - before) >= 1:
                replaced_s = loop.time() - killed_at[0]
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"clients": clients, "cut": len(cut), "served_again": len(served_again),
            "served_again_ms": latency_summary(sorted(1000 * s for s in served_again.values())),
            "replacement_forked_ms": None if replaced_s is None else round(1000 * replaced_s, 1),
            "errors": len(errors), "first_errors": sorted(set(errors))[:5]}


async def run(http: aiohttp.ClientSession, backing: Backing, jwt_secret: str, site_key: str) -> dict:
    """Start `serve --workers 2` on its own port, `measure`, stop it; a failure is reported, not raised."""
    supervisor = await asyncio.to_thread(functools.partial(start_server, "server-supervised", backing, jwt_secret, workers=2))
    try:
        return await measure(http, f"ws://127.0.0.1:{supervisor.port}", site_key, supervisor.popen.pid)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        supervisor.stop()
