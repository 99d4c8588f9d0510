"""The support workflow's figures: visitors chatting with the built-in assistant, and a queue of
1,000 waiting visitors on two processes (what one recalculation costs, what one accepted chat pushes).

Each part starts its own server processes (the message loads' servers run with the assistant
off, so their figures stay comparable with earlier runs).
"""
from __future__ import annotations

import asyncio
import collections
import secrets
import time

import aiohttp
import orjson

from .loadgen import _joined, _read_until, _ws, latency_summary
from .report import table
from .target import Tenant, start_server

FAQ = [{"keywords": ["opening hours"], "answer": "We are open 9:00-17:00, Monday to Friday."}]
QUESTION = b'{"type":"message","message":"What are your opening hours?"}'
QUEUE_SIZE = 1000
QUIET = 3.0  # a wait for frames ends when none came for this long
ASSISTANT_ON = {"BOT_ENABLED": "1", "AI_REPLY_CONCURRENCY": "64"}
QUEUE_ONLY = {"BOT_ENABLED": "0", "QUEUE_REFRESH": "60"}  # no periodic recalculation during the measures


class Visitor:
    """A joined visitor socket whose reader counts the frames the figures need."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.sent: collections.deque[int] = collections.deque()  # send times of unanswered messages
        self.latencies: list[float] = []
        self.queue_updates = 0
        self.answered = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            kind = orjson.loads(msg.data).get("type")
            if kind == "message" and self.sent:  # the assistant's reply to the oldest unanswered message
                self.latencies.append((time.perf_counter_ns() - self.sent.popleft()) / 1e6)
                self.answered.set()
            elif kind == "queue_update":
                self.queue_updates += 1

    async def ask(self) -> None:
        """Send the question (its reply is timed by the reader)."""
        self.sent.append(time.perf_counter_ns())
        await self.ws.send_frame(QUESTION, aiohttp.WSMsgType.TEXT)

    async def close(self) -> None:
        """Close the socket and stop reading."""
        await self.ws.close()
        self.reader.cancel()


async def open_visitors(http: aiohttp.ClientSession, bases: list[str], count: int, site_key: str) -> list[Visitor]:
    """`count` tokenless visitor sockets joined with their first frame, spread over `bases`."""
    prefix, gate = f"bs{secrets.token_hex(3)}", asyncio.Semaphore(20)

    async def one(i: int) -> Visitor:
        async with gate:
            ws = await _ws(http, f"{bases[i % len(bases)]}/ws/{prefix}-{i:05d}")
            await ws.send_str(orjson.dumps({"type": "join", "siteKey": site_key}).decode())
            await _read_until(ws, _joined, "connection_status joined")
            return Visitor(ws)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def quiet(visitors: list[Visitor], done, limit: float = 60.0) -> None:
    """Wait until `done()` holds, or nothing changed for QUIET seconds, or `limit` seconds passed."""
    start = last_change = time.monotonic()
    seen = None
    while not done() and time.monotonic() - last_change < QUIET and time.monotonic() - start < limit:
        now = sum(v.queue_updates + len(v.latencies) for v in visitors)
        if now != seen:
            seen, last_change = now, time.monotonic()
        await asyncio.sleep(0.05)


async def ai_replies(http, backing, secret: str, pool, visitors_n: int, duration: float, rate: float) -> dict:
    """Replies per second at the maximum (each visitor asks again once answered) and latency at a fixed rate."""
    from amoiq_chat import db

    server = start_server("server-ai", backing, secret, ASSISTANT_ON)
    visitors: list[Visitor] = []
    try:
        tenant = await Tenant().create(pool, secret, 0)
        async with pool.acquire() as conn:
            await db.execute(conn, "UPDATE widget_configs SET faq = %s WHERE site_key = %s",
                             (db.jsonb(FAQ), tenant.site_key))
        visitors = await open_visitors(http, [f"ws://127.0.0.1:{server.port}"], visitors_n, tenant.site_key)
        for v in visitors:  # the first message is answered with the welcome message too: out of the measure
            await v.ask()
        await quiet(visitors, lambda: all(not v.sent for v in visitors))
        for v in visitors:
            v.sent.clear()
            v.latencies.clear()
        out = {}
        for mode in ("max", "fixed"):
            cpu0, start = server.cpu_seconds(), time.monotonic()
            end = start + duration
            if mode == "max":
                async def loop(v: Visitor) -> None:
                    while time.monotonic() < end:
                        v.answered.clear()
                        await v.ask()
                        await asyncio.wait_for(v.answered.wait(), 30)
            else:
                interval = visitors_n / rate

                async def loop(v: Visitor) -> None:
                    await asyncio.sleep(interval * visitors.index(v) / visitors_n)
                    next_at = time.monotonic()
                    while next_at < end:
                        await v.ask()
                        next_at += interval
                        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*(loop(v) for v in visitors), return_exceptions=True)
            await quiet(visitors, lambda: all(not v.sent for v in visitors))
            wall = time.monotonic() - start
            latencies = [ms for v in visitors for ms in v.latencies]
            out[mode] = {"visitors": visitors_n, "replies": len(latencies), "replies_per_s": round(len(latencies) / wall, 1),
                         "unanswered": sum(len(v.sent) for v in visitors), **latency_summary(latencies),
                         "server_cpu_us_per_reply": round(1e6 * (server.cpu_seconds() - cpu0) / max(len(latencies), 1), 1)}
            if mode == "fixed":
                out[mode]["offered_per_s"] = rate
            for v in visitors:
                v.sent.clear()
                v.latencies.clear()
        return out
    finally:
        for v in visitors:
            await v.close()
        server.stop()


async def queue(http, backing, secret: str, pool) -> dict:
    """1,000 waiting visitors on two processes: the first recalculation, then one chat accepted."""
    from amoiq_chat import db

    servers = [start_server(f"server-q{n}", backing, secret, QUEUE_ONLY) for n in (1, 2)]
    visitors: list[Visitor] = []
    agent = None
    try:
        tenant = await Tenant().create(pool, secret, 1)
        bases = [f"ws://127.0.0.1:{s.port}" for s in servers]
        agent = await _ws(http, f"{bases[1]}/ws/agent/{tenant.agent_ids[0]}?token={tenant.agent_tokens[0]}")
        visitors = await open_visitors(http, bases, QUEUE_SIZE, tenant.site_key)
        async with pool.acquire() as conn:  # all but the last escalated long ago, in order
            rows = await db.fetch_all(
                conn,
                "UPDATE sessions SET status = 'waiting', escalated_at = now() - interval '1 hour' + id * interval '1 ms'"
                " WHERE tenant_id = %s AND session_id <> (SELECT max(session_id) FROM sessions WHERE tenant_id = %s)"
                " RETURNING session_id, id", (tenant.tenant_id, tenant.tenant_id))
            last = (await db.fetch_one(conn, "SELECT max(session_id) AS s FROM sessions WHERE tenant_id = %s",
                                       (tenant.tenant_id,)))["s"]
        head = min(rows, key=lambda r: r["id"])["session_id"]

        def cpu() -> float:
            return sum(s.cpu_seconds() for s in servers)

        # One escalation: the whole queue is computed and every visitor told, once.
        cpu0, start = cpu(), time.monotonic()
        async with http.post(f"http://127.0.0.1:{servers[0].port}/api/widgets/escalate/{tenant.site_key}/{last}") as resp:
            await resp.read()
        await quiet(visitors, lambda: sum(v.queue_updates for v in visitors) >= QUEUE_SIZE)
        first = {"told": sum(v.queue_updates for v in visitors), "cpu_ms": round(1e3 * (cpu() - cpu0), 1),
                 "wall_ms": round(1e3 * (time.monotonic() - start), 1)}
        for v in visitors:
            v.queue_updates = 0
        # The agent (on the other process) accepts the head: everyone behind it moves up.
        cpu0, start = cpu(), time.monotonic()
        await agent.send_str(orjson.dumps({"type": "accept_chat", "sessionId": head}).decode())
        await quiet(visitors, lambda: sum(v.queue_updates for v in visitors) >= QUEUE_SIZE - 1)
        accepted = {"pushed": sum(v.queue_updates for v in visitors), "changed": QUEUE_SIZE - 1,
                    "cpu_ms": round(1e3 * (cpu() - cpu0), 1), "wall_ms": round(1e3 * (time.monotonic() - start), 1)}
        return {"waiting": QUEUE_SIZE, "processes": 2, "first_recalculation": first, "one_accepted": accepted}
    finally:
        for v in visitors:
            await v.close()
        if agent is not None:
            await agent.close()
        for s in servers:
            s.stop()


async def run(bench, backing, secret: str, pool) -> None:
    """Both parts, into results['support'] (a failure becomes an 'error' entry)."""
    a, results = bench.args, bench.results.setdefault("support", {})
    bench.progress.start("support: the assistant's replies", 2 * a.duration + 10)
    try:
        results["assistant"] = await ai_replies(bench.http, backing, secret, pool, a.max_pairs, a.duration, a.ai_rate)
    except Exception as exc:  # the bench reports; it does not crash the run
        results["assistant"] = {"error": f"{type(exc).__name__}: {exc}"}
    bench.progress.finish()
    bench.progress.start(f"support: a queue of {QUEUE_SIZE}", 20)
    try:
        results["queue"] = await queue(bench.http, backing, secret, pool)
    except Exception as exc:
        results["queue"] = {"error": f"{type(exc).__name__}: {exc}"}
    bench.progress.finish()


def render(results: dict) -> list[str]:
    """The support tables (nothing when the part did not run)."""
    support = results.get("support")
    if not support:
        return []
    out = []
    ai = support.get("assistant", {})
    if "error" in ai:
        out += [f"Assistant replies: not available: {ai['error']}", ""]
    elif ai:
        rows = [[mode, run["visitors"], run.get("offered_per_s", "-"), run["replies_per_s"], run["p50_ms"], run["p99_ms"],
                 run["server_cpu_us_per_reply"], run["unanswered"]] for mode, run in ai.items()]
        out += ["Assistant replies (built-in FAQ assistant, one process; latency: visitor send -> AI reply)",
                table(["load", "visitors", "offered/s", "replies/s", "p50 ms", "p99 ms", "srv us/reply", "unanswered"],
                      rows), ""]
    q = support.get("queue", {})
    if "error" in q:
        out += [f"Queue: not available: {q['error']}", ""]
    elif q:
        first, acc = q["first_recalculation"], q["one_accepted"]
        rows = [["first recalculation (all told)", first["told"], first["cpu_ms"], first["wall_ms"]],
                [f"one chat accepted ({acc['changed']} changed)", acc["pushed"], acc["cpu_ms"], acc["wall_ms"]]]
        out += [f"Queue of {q['waiting']} waiting visitors on {q['processes']} processes (CPU of both processes)",
                table(["event", "queue_update frames", "server CPU ms", "wall ms"], rows), ""]
    return out
