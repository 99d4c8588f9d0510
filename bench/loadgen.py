"""The load generator: visitor/agent pairs over the raw WebSocket protocol, idle sockets, HTTP.

It only targets 127.0.0.1; every loop is bounded in count and time. One task per connection
(plus one scheduler task at a fixed rate); frames are built as bytes and parsed with orjson.
Latency is from the send (at a fixed rate: the *scheduled* send, so a late sender counts
against the figure) to the agent socket's receipt, both on this process's monotonic clock;
the send time travels in the message text, `b:<pair>:<n>:<ns> ...`.
"""
from __future__ import annotations

import asyncio
import heapq
import resource
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

import aiohttp
import orjson
from aiohttp import WSMsgType

HOST = "127.0.0.1"
SETUP_TIMEOUT = 15.0     # seconds for one pair's handshake (connect, first message, accept)
DRAIN_QUIET = 3.0        # after the load: a message not received while nothing arrived for this long is lost
DRAIN_MAX = 60.0         # ... and the wait for the backlog of an overloaded server ends after this long anyway
ACK_GRACE = 5.0          # maximum load: a visitor still waiting for an ack this long after the end is stuck
MAX_MESSAGES = 10_000_000  # per run: a hard bound whatever the settings
EARLY = 0.001            # fixed rate: how far ahead of its schedule a message may be sent
TEXT_PAD = "Hello, I have a question about my order"
TEXT = WSMsgType.TEXT
now_ns = time.perf_counter_ns


class SetupError(RuntimeError):
    """A pair could not be connected or the agent could not accept its chat."""


@dataclass
class Endpoint:
    """Where visitors and agents connect, and who the agents are."""

    visitor_base: str                      # "ws://127.0.0.1:P"
    agent_base: str
    agent_ids: list[str]                   # one per pair
    agent_tokens: list[str] | None = None  # JWTs, same order; None for the relay
    site_key: str = "relay"
    tenant_id: str = ""
    alternate: bool = False                # odd pairs swap the two bases: both processes store messages

    def bases(self, index: int) -> tuple[str, str]:
        """(visitor base, agent base) of pair `index`."""
        if self.alternate and index % 2:
            return self.agent_base, self.visitor_base
        return self.visitor_base, self.agent_base

    def __post_init__(self) -> None:
        for base in (self.visitor_base, self.agent_base):
            if not base.startswith(f"ws://{HOST}:"):
                raise ValueError(f"the load generator only targets {HOST}, not {base}")


@dataclass
class Pair:
    """One visitor socket and the agent socket that accepted its chat."""

    index: int
    session_id: str
    visitor: aiohttp.ClientWebSocketResponse
    agent: aiohttp.ClientWebSocketResponse
    sent: int = 0
    acked: int = 0
    received: set = field(default_factory=set)


@dataclass
class RunStats:
    """What one load run measured on the client side."""

    mode: str
    pairs: int
    duration: float
    offered: float | None = None       # msg/s, fixed mode only
    sent: int = 0
    delivered: int = 0                 # unique messages received by the right agent
    in_window: int = 0                 # of those, received before the load ended
    duplicates: int = 0
    foreign: int = 0                   # messages of another pair seen by an agent
    latencies_ms: list = field(default_factory=list)
    sender_lag_ms: float = 0.0         # fixed mode: worst lateness of the scheduler
    loadgen_cpu_s: float = 0.0
    wall_s: float = 0.0
    errors: list = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Messages sent that no agent received."""
        return self.sent - self.delivered

    @property
    def rate(self) -> float:
        """Delivered msg/s over the load window."""
        return self.in_window / self.duration if self.duration else 0.0

    def summary(self) -> dict:
        """The figures, without the raw latencies."""
        return {"mode": self.mode, "pairs": self.pairs, "duration_s": self.duration, "offered_per_s": self.offered,
                "sent": self.sent, "delivered": self.delivered, "lost": self.lost, "duplicates": self.duplicates,
                "foreign": self.foreign, "delivered_per_s": round(self.rate, 1), **latency_summary(self.latencies_ms),
                "sender_lag_max_ms": round(self.sender_lag_ms, 2), "loadgen_cpu_s": round(self.loadgen_cpu_s, 3),
                "loadgen_cpu_us_per_msg": round(1e6 * self.loadgen_cpu_s / self.delivered, 1) if self.delivered else None,
                "wall_s": round(self.wall_s, 2), "errors": self.errors[:10]}


def percentile(sorted_values: list, q: float) -> float | None:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))]


def latency_summary(values: list) -> dict:
    """p50/p95/p99/max in milliseconds."""
    ordered = sorted(values)
    out = {f"p{int(q * 100)}_ms": percentile(ordered, q) for q in (0.5, 0.95, 0.99)}
    out["max_ms"] = ordered[-1] if ordered else None
    return {key: round(value, 2) if value is not None else None for key, value in out.items()}


def cpu_seconds() -> float:
    """User+system CPU time of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def message_frame(pair: int, n: int, t_ns: int) -> bytes:
    """A visitor `message` frame whose text carries pair, number and send time."""
    return (b'{"type":"message","message":"b:%d:%d:%d %s","clientMessageId":"m%d-%d"}'
            % (pair, n, t_ns, TEXT_PAD.encode(), pair, n))


async def _read_until(ws: aiohttp.ClientWebSocketResponse, want: Callable[[dict], bool], what: str) -> dict:
    async with asyncio.timeout(SETUP_TIMEOUT):
        while True:
            msg = await ws.receive()
            if msg.type is not TEXT:
                raise SetupError(f"socket closed while waiting for {what} ({msg.type.name} {msg.data!r})")
            frame = orjson.loads(msg.data)
            if want(frame):
                return frame
            if frame.get("type") == "error":
                raise SetupError(f"error frame while waiting for {what}: {frame}")


_DRAINING: set[asyncio.Task] = set()


def _keep(task: asyncio.Task) -> None:
    _DRAINING.add(task)
    task.add_done_callback(_DRAINING.discard)


async def _read_to_end(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read a socket until it closes (answering pings on the way); its frames are not needed."""
    async for _ in ws:
        pass


def _joined(frame: dict) -> bool:
    return frame.get("type") == "connection_status" and frame.get("status") == "joined"


async def _ws(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    try:
        return await http.ws_connect(url, autoping=True, max_msg_size=1 << 20, timeout=aiohttp.ClientWSTimeout(ws_close=2))
    except aiohttp.WSServerHandshakeError as exc:
        raise SetupError(f"{url.split('?')[0]}: handshake refused ({exc.status} {exc.message})") from None
    except aiohttp.ClientError as exc:
        raise SetupError(f"{url.split('?')[0]}: {exc}") from None


async def open_pair(http: aiohttp.ClientSession, ep: Endpoint, index: int, session_id: str) -> Pair:
    """Open a visitor, send its first message (creating the session), let an agent accept it."""
    visitor_base, agent_base = ep.bases(index)
    visitor = await _ws(http, f"{visitor_base}/ws/{session_id}")
    first = {"type": "message", "message": "Hello, I need help", "sessionId": session_id, "siteKey": ep.site_key,
             "clientMessageId": f"init-{session_id}"}
    if ep.tenant_id:
        first["tenantId"] = ep.tenant_id
    await visitor.send_str(orjson.dumps(first).decode())
    await _read_until(visitor, lambda f: f.get("type") == "ack", "the first message's ack")
    agent_id = ep.agent_ids[index]
    url = f"{agent_base}/ws/agent/{agent_id}"
    if ep.agent_tokens:
        url += f"?token={ep.agent_tokens[index]}"
    agent = await _ws(http, url)
    await agent.send_str(orjson.dumps({"type": "accept_chat", "sessionId": session_id, "agentId": agent_id}).decode())
    await _read_until(agent, lambda f: f.get("type") == "chat_accepted"
                      and f.get("sessionId", session_id) == session_id, "chat_accepted")
    return Pair(index, session_id, visitor, agent)


async def open_pairs(http: aiohttp.ClientSession, ep: Endpoint, count: int, prefix: str, concurrency: int = 20) -> list[Pair]:
    """Open `count` pairs, `concurrency` at a time; raise SetupError if any fails."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Pair:
        async with gate:
            return await open_pair(http, ep, i, f"{prefix}-{i:04d}")

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    pairs = [r for r in results if isinstance(r, Pair)]
    failures = [r for r in results if not isinstance(r, Pair)]
    if failures:
        await close_all([s for p in pairs for s in (p.visitor, p.agent)])
        first = failures[0]
        raise SetupError(f"{len(failures)}/{count} pairs failed to open; first: {type(first).__name__}: {first}")
    return pairs


async def close_all(sockets: Iterable[aiohttp.ClientWebSocketResponse], concurrency: int = 200) -> None:
    """Close sockets, a bounded number at a time, giving up after a few seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(ws):
        async with gate:
            try:
                async with asyncio.timeout(2):
                    await ws.close()
            except (TimeoutError, OSError, aiohttp.ClientError):
                pass

    await asyncio.gather(*(one(ws) for ws in sockets))


async def _agent_reader(pair: Pair, stats: RunStats, window_end: list) -> None:
    """Record latency of each of this pair's messages; count others' and duplicates."""
    ws, received, latencies, index = pair.agent, pair.received, stats.latencies_ms, pair.index
    while True:
        msg = await ws.receive()
        t = now_ns()
        if msg.type is not TEXT:
            return
        data = msg.data
        start = data.find('"b:')      # our text, found without parsing the frame: keeps the generator cheap
        if start < 0 or '"new_message"' not in data:
            continue
        _, p, n, sent_ns = data[start + 1:data.index(" ", start)].split(":")
        if int(p) != index:
            stats.foreign += 1
            continue
        n = int(n)
        if n in received:
            stats.duplicates += 1
            continue
        received.add(n)
        latencies.append((t - int(sent_ns)) / 1e6)
        if t <= window_end[0]:
            stats.in_window += 1


async def _ack_reader(pair: Pair) -> None:
    """Count the visitor's acks (fixed mode)."""
    ws = pair.visitor
    while True:
        msg = await ws.receive()
        if msg.type is not TEXT:
            return
        if '"ack"' in msg.data:
            pair.acked += 1


async def _drain(pairs: list[Pair], stats: RunStats) -> None:
    """Wait for what is in flight: until all arrived, or nothing arrived for DRAIN_QUIET s (at most DRAIN_MAX s)."""
    deadline = time.perf_counter() + DRAIN_MAX
    seen, quiet_since = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        got = sum(len(p.received) for p in pairs)
        if got >= stats.sent:
            return
        if got != seen:
            seen, quiet_since = got, time.perf_counter()
        elif time.perf_counter() - quiet_since > DRAIN_QUIET:
            return
        await asyncio.sleep(0.05)


async def _finish(pairs: list[Pair], stats: RunStats, readers: list[asyncio.Task], cpu0: float, wall0: float,
                  after_drain: Callable[[], None]) -> RunStats:
    await _drain(pairs, stats)
    stats.delivered = sum(len(p.received) for p in pairs)
    stats.loadgen_cpu_s = cpu_seconds() - cpu0
    stats.wall_s = time.perf_counter() - wall0
    after_drain()     # the caller's CPU snapshot, before closing sockets costs anything
    await close_all([s for p in pairs for s in (p.visitor, p.agent)])
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return stats


async def run_fixed(pairs: list[Pair], rate: float, duration: float, on_tick: Callable[[float], None] = lambda _: None,
                    after_drain: Callable[[], None] = lambda: None) -> RunStats:
    """Each pair's visitor sends `rate` msg/s for `duration` s, open loop, staggered evenly."""
    stats = RunStats("fixed", len(pairs), duration, offered=rate * len(pairs))
    interval = 1.0 / rate
    per_pair = min(int(duration * rate), MAX_MESSAGES // max(1, len(pairs)))
    start = time.perf_counter() + 0.2
    window_end = [int((start + duration + 0.5) * 1e9)]   # fixed load: allow the last ones to land
    readers = [asyncio.create_task(_agent_reader(p, stats, window_end)) for p in pairs]
    readers += [asyncio.create_task(_ack_reader(p)) for p in pairs]
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    heap = [(start + i * interval / len(pairs), i, 1) for i in range(len(pairs))]
    heapq.heapify(heap)
    next_tick = start
    while heap:
        due, i, n = heap[0]
        now = time.perf_counter()
        if due > now + EARLY:
            await asyncio.sleep(due - now)
            continue
        # A message up to EARLY ahead of its time goes now (the loop's timers have 1 ms
        # granularity: sleeping less would spin); it is stamped with when it really left.
        stats.sender_lag_ms = max(stats.sender_lag_ms, (now - due) * 1e3)
        pair = pairs[i]
        if n < per_pair:
            heapq.heapreplace(heap, (due + interval, i, n + 1))
        else:
            heapq.heappop(heap)
        if pair.visitor.closed:
            stats.errors.append(f"pair {i}: visitor socket closed")
            continue
        await pair.visitor.send_frame(message_frame(i, n, int(max(due, now) * 1e9)), TEXT)
        pair.sent += 1
        stats.sent += 1
        if now >= next_tick:
            on_tick(now - start)
            next_tick = now + 0.25
    stats.duration = duration
    return await _finish(pairs, stats, readers, cpu0, wall0, after_drain)


async def _closed_loop_visitor(pair: Pair, stats: RunStats, end: float) -> None:
    ws, i = pair.visitor, pair.index
    for n in range(1, MAX_MESSAGES):
        t = now_ns()
        if t >= end * 1e9:
            return
        await ws.send_frame(message_frame(i, n, t), TEXT)
        pair.sent += 1
        stats.sent += 1
        while True:
            msg = await ws.receive()
            if msg.type is not TEXT:
                stats.errors.append(f"pair {i}: visitor socket closed ({msg.type.name})")
                return
            if '"ack"' in msg.data:
                pair.acked += 1
                break


async def run_max(pairs: list[Pair], duration: float, on_tick: Callable[[float], None] = lambda _: None,
                  after_drain: Callable[[], None] = lambda: None) -> RunStats:
    """Each visitor sends its next message when the previous one is acknowledged, for `duration` s."""
    stats = RunStats("max", len(pairs), duration)
    start = time.perf_counter()
    end = start + duration
    window_end = [int(end * 1e9)]
    cpu0, wall0 = cpu_seconds(), start
    readers = [asyncio.create_task(_agent_reader(p, stats, window_end)) for p in pairs]
    senders = [asyncio.create_task(_closed_loop_visitor(p, stats, end)) for p in pairs]
    deadline = end + ACK_GRACE
    while not all(s.done() for s in senders) and time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        on_tick(time.perf_counter() - start)
    for task in senders:       # a sender still waiting for an ack here is stuck: stop it
        if not task.done():
            stats.errors.append(f"visitor still waiting for an ack {ACK_GRACE}s after the end")
            task.cancel()
    await asyncio.gather(*senders, return_exceptions=True)
    return await _finish(pairs, stats, readers, cpu0, wall0, after_drain)


async def open_idle(http: aiohttp.ClientSession, base: str, count: int, prefix: str, first_frame: Callable[[str], bytes | None],
                    concurrency: int = 50) -> tuple[list, list]:
    """Open `count` visitor sockets that send one frame (or none), wait for it to join them, then stay silent.

    Each socket then reads in the background until it closes, so it answers the server's
    heartbeat pings as a browser does (aiohttp's client answers them only while reading)."""
    if not base.startswith(f"ws://{HOST}:"):
        raise ValueError(f"the load generator only targets {HOST}")
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(i: int):
        async with gate:
            session_id = f"{prefix}-{i:05d}"
            ws = None
            try:
                ws = await _ws(http, f"{base}/ws/{session_id}")
                frame = first_frame(session_id)
                if frame:
                    await ws.send_frame(frame, TEXT)
                    await _read_until(ws, _joined, "connection_status joined")
                _keep(asyncio.create_task(_read_to_end(ws)))
                return ws
            except (SetupError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                errors.append(str(exc) or type(exc).__name__)
                if ws is not None:
                    await close_all([ws])
                return None

    sockets = await asyncio.gather(*(one(i) for i in range(count)))
    return [ws for ws in sockets if ws is not None], errors


@dataclass
class HttpStats:
    """Requests/s and latency of one HTTP route."""

    name: str
    requests: int = 0
    ok: int = 0
    statuses: dict = field(default_factory=dict)
    latencies_ms: list = field(default_factory=list)
    duration: float = 0.0
    loadgen_cpu_s: float = 0.0

    def summary(self) -> dict:
        """The figures, without the raw latencies."""
        return {"route": self.name, "requests": self.requests, "ok": self.ok, "statuses": self.statuses,
                "requests_per_s": round(self.ok / self.duration, 1) if self.duration else 0.0,
                **latency_summary(self.latencies_ms), "loadgen_cpu_s": round(self.loadgen_cpu_s, 3)}


async def http_load(name: str, make_request: Callable[[aiohttp.ClientSession, int, int], Awaitable[int]],
                    concurrency: int, duration: float, on_tick: Callable[[float], None] = lambda _: None) -> HttpStats:
    """Run `concurrency` workers, each issuing requests back to back for `duration` s."""
    stats = HttpStats(name)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
        start = time.perf_counter()
        end = start + duration
        cpu0 = cpu_seconds()

        async def worker(w: int) -> None:
            for n in range(MAX_MESSAGES):
                t = time.perf_counter()
                if t >= end:
                    return
                try:
                    status = await make_request(http, w, n)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                stats.latencies_ms.append((time.perf_counter() - t) * 1e3)
                stats.requests += 1
                stats.statuses[str(status)] = stats.statuses.get(str(status), 0) + 1
                if isinstance(status, int) and status < 300:
                    stats.ok += 1

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.25)
                on_tick(time.perf_counter() - start)

        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        tick.cancel()
        stats.duration = time.perf_counter() - start
        stats.loadgen_cpu_s = cpu_seconds() - cpu0
    return stats
