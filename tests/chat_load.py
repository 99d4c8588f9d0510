"""Reconnecting chat clients for the fault tests: pairs of a visitor and an agent exchanging numbered
messages the way the README's client contract says (reconnect with `since`, resend what was not acked
with the same clientMessageId, retry SERVICE_UNAVAILABLE), and the checks of what they end with."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

RETRY = 0.2  # seconds before a client tries again (a refused message, a failed reconnect)
ACK_TIMEOUT = 10.0  # no ack nor error this long after a send: the socket is taken for dead
SETTLE = 30.0  # seconds a client gets, after the load, to have every message of its chat


class Disconnected(Exception):
    """The socket closed while a message waited for its ack."""


@dataclass
class Side:
    """One side of a chat: a reconnecting socket that sends numbered messages one at a time (each
    until acked) and records every message frame it receives by seq."""

    http: aiohttp.ClientSession
    base: str  # ws://host:port
    session_id: str
    name: str
    received: dict[int, str] = field(default_factory=dict)  # seq -> message id
    acked: dict[str, int] = field(default_factory=dict)  # clientMessageId -> seq
    refusals: Counter = field(default_factory=Counter)  # error codes received
    connects: int = 0
    ws: aiohttp.ClientWebSocketResponse | None = None
    _reader: asyncio.Task | None = None
    _waiting: dict[str, asyncio.Future] = field(default_factory=dict)

    def contiguous(self) -> int:
        """The highest seq up to which every message was received."""
        n = 0
        while n + 1 in self.received:
            n += 1
        return n

    def _url(self) -> str:
        raise NotImplementedError

    async def _greeted(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """What the socket does once open, before it is used (after a reconnect too)."""

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(self._url())
        try:
            while True:  # a visitor socket with ?since= gets what it missed first, then connection_status (lastSeq)
                msg = await ws.receive(timeout=ACK_TIMEOUT)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                frame = json.loads(msg.data)
                if frame["type"] == "connection_status":
                    break
                self._on_frame(frame)
            await self._greeted(ws)
        except BaseException:
            await ws.close()
            raise
        return ws

    def _message_frame(self, cmid: str, text: str) -> dict:
        raise NotImplementedError

    def _sync_frame(self) -> dict:
        raise NotImplementedError

    async def ensure(self, deadline: float) -> None:
        """Connected (again), or fail after `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        while self.ws is None or self.ws.closed:
            try:
                ws = await asyncio.wait_for(self._open(), ACK_TIMEOUT)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, AssertionError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(RETRY)
                continue
            self.ws, self.connects = ws, self.connects + 1
            self._reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_frame(json.loads(msg.data))
        except (aiohttp.ClientError, OSError):
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(Disconnected())
            self._waiting.clear()

    def _on_frame(self, frame: dict) -> None:
        kind = frame["type"]
        if kind in ("ack", "error") and frame.get("clientMessageId") in self._waiting:
            future = self._waiting.pop(frame["clientMessageId"])
            if not future.done():
                future.set_result(frame)
        elif kind == "error":
            self.refusals[frame["code"]] += 1
        elif kind in ("meta_message_created", "new_message"):
            message = frame["message"]
            self.received.setdefault(message["seq"], message["id"])

    async def drop(self) -> None:
        """Close the socket (a client that gave up on it)."""
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)

    async def send(self, n: int, deadline: float) -> None:
        """Send message number `n` until it is acked: resend with the same clientMessageId after a
        refusal or a lost socket."""
        cmid = f"{self.name}-{n}"
        text = f"{self.name} says {n}"
        loop = asyncio.get_running_loop()
        while True:
            await self.ensure(deadline)
            future = loop.create_future()
            self._waiting[cmid] = future
            try:
                await self.ws.send_str(json.dumps(self._message_frame(cmid, text)))
                reply = await asyncio.wait_for(future, ACK_TIMEOUT)
            except (Disconnected, ConnectionError, aiohttp.ClientError, asyncio.TimeoutError):
                self._waiting.pop(cmid, None)
                await self.drop()
                if loop.time() > deadline:
                    raise
                continue
            if reply["type"] == "ack":
                self.acked[cmid] = reply["seq"]
                return
            self.refusals[reply["code"]] += 1
            assert reply["code"] == "SERVICE_UNAVAILABLE", f"{cmid} refused: {reply}"
            if loop.time() > deadline:
                raise AssertionError(f"{cmid} still refused at the deadline: {reply}")
            await asyncio.sleep(RETRY)

    async def settle(self, last_seq: int) -> None:
        """Wait until every message up to `last_seq` was received, asking for a replay (`sync`) when
        nothing came for a while; fails after SETTLE seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE
        while self.contiguous() < last_seq:
            await self.ensure(deadline)
            before = self.contiguous()
            try:
                await self.ws.send_str(json.dumps(self._sync_frame()))
            except (ConnectionError, aiohttp.ClientError):
                await self.drop()
            waited = loop.time() + 2
            while self.contiguous() == before < last_seq and loop.time() < waited:
                await asyncio.sleep(0.05)
            if loop.time() > deadline:
                raise AssertionError(f"{self.name}: got up to seq {self.contiguous()} of {last_seq}")


@dataclass
class Visitor(Side):
    """The visitor: `/ws/{sessionId}?token=<visitor JWT>&since=<last seq>`."""

    token: str = ""

    def _url(self) -> str:
        return f"{self.base}/ws/{self.session_id}?token={self.token}&since={self.contiguous()}"

    def _message_frame(self, cmid: str, text: str) -> dict:
        return {"type": "message", "message": text, "clientMessageId": cmid}

    def _sync_frame(self) -> dict:
        return {"type": "sync", "since": self.contiguous()}


@dataclass
class Agent(Side):
    """The agent holding the chat: `/ws/agent/{id}?token=<JWT>`, then `sync` from its last seq."""

    agent_id: int = 0
    token: str = ""
    accepted: bool = False

    def _url(self) -> str:
        return f"{self.base}/ws/agent/{self.agent_id}?token={self.token}"

    async def _greeted(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Accept the chat the first time; after that (and then), `sync` from the last seq received."""
        if not self.accepted:
            await ws.send_json({"type": "accept_chat", "sessionId": self.session_id})
            while True:
                msg = await ws.receive(timeout=ACK_TIMEOUT)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                frame = json.loads(msg.data)
                assert frame["type"] != "error", frame
                if frame["type"] == "chat_accepted":
                    break
            self.accepted = True
        await ws.send_json(self._sync_frame())

    def _message_frame(self, cmid: str, text: str) -> dict:
        return {"type": "send_message", "sessionId": self.session_id, "text": text, "clientMessageId": cmid}

    def _sync_frame(self) -> dict:
        return {"type": "sync", "sessionId": self.session_id, "since": self.contiguous()}


async def visitor_token(http: aiohttp.ClientSession, url: str, tenant) -> tuple[str, str]:
    """(session id, visitor JWT) from POST /api/chat/anonymous-token."""
    async with http.post(f"{url}/api/chat/anonymous-token", json={"tenantId": tenant.id}, headers=tenant.bearer()) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return body["sessionId"], body["token"]


async def open_pairs(http: aiohttp.ClientSession, tenant, visitor_url: str, agent_url: str) -> list[tuple[Visitor, Agent]]:
    """One chat per agent of the tenant: a visitor (served by `visitor_url`) and the agent holding
    the chat (served by `agent_url`), both connected."""
    pairs = []
    deadline = asyncio.get_running_loop().time() + 60
    for n, agent in enumerate(tenant.agents):
        sid, token = await visitor_token(http, visitor_url, tenant)
        visitor = Visitor(http, ws_base(visitor_url), sid, f"v{n}", token=token)
        staff = Agent(http, ws_base(agent_url), sid, f"a{n}", agent_id=agent["id"], token=agent["token"])
        await visitor.ensure(deadline)
        await staff.ensure(deadline)
        pairs.append((visitor, staff))
    return pairs


def ws_base(http_url: str) -> str:
    """ws://host:port of http://host:port."""
    return "ws" + http_url[len("http"):]


async def talk(pairs: list[tuple[Visitor, Agent]], count: int, timeout: float) -> None:
    """Each side of each chat sends `count` numbered messages, one after another."""
    deadline = asyncio.get_running_loop().time() + timeout

    async def side(client: Side) -> None:
        for n in range(count):
            await client.send(n, deadline)

    await asyncio.gather(*(side(client) for pair in pairs for client in pair))


def acked_total(pairs: list[tuple[Visitor, Agent]]) -> int:
    """How many messages have been acked so far, all chats together."""
    return sum(len(client.acked) for pair in pairs for client in pair)


async def when_acked(pairs: list[tuple[Visitor, Agent]], total: int, timeout: float = 120) -> None:
    """Wait until `total` messages were acked."""
    deadline = time.monotonic() + timeout
    while acked_total(pairs) < total:
        assert time.monotonic() < deadline, f"only {acked_total(pairs)} of {total} acked"
        await asyncio.sleep(0.05)


async def check_every_message(pairs: list[tuple[Visitor, Agent]], db_conn, count: int) -> int:
    """After the load: every message sent was acked and stored once with its acked seq, seqs are
    gapless, and each side received every message of its chat (by seq, the stored id). Returns the
    number of messages stored."""
    ids = [visitor.session_id for visitor, _ in pairs]
    with db_conn.cursor() as cur:
        cur.execute("SELECT session_id, seq, id::text, client_message_id FROM messages"
                    " WHERE session_id = ANY(%s) ORDER BY session_id, seq", (ids,))
        rows = cur.fetchall()
    stored: dict[str, list[tuple[int, str, str]]] = {sid: [] for sid in ids}
    for sid, seq, message_id, cmid in rows:
        stored[sid].append((seq, message_id, cmid))
    for visitor, agent in pairs:
        chat = stored[visitor.session_id]
        assert [seq for seq, _, _ in chat] == list(range(1, len(chat) + 1)), f"seqs of {visitor.session_id} have gaps"
        by_cmid = Counter(cmid for _, _, cmid in chat)
        sent = {f"{client.name}-{n}" for client in (visitor, agent) for n in range(count)}
        assert set(by_cmid) == sent and set(by_cmid.values()) == {1}, "a message stored twice, or not at all"
        acked = {**visitor.acked, **agent.acked}
        assert acked == {cmid: seq for seq, _, cmid in chat}, "an ack's seq differs from the stored one"
    await asyncio.gather(*(client.settle(len(stored[client.session_id])) for pair in pairs for client in pair))
    for visitor, agent in pairs:
        expected = {seq: message_id for seq, message_id, _ in stored[visitor.session_id]}
        assert visitor.received == expected and agent.received == expected, "a side missed or mixed up a message"
    return len(rows)


async def close_all(pairs: list[tuple[Visitor, Agent]]) -> None:
    """Close every client's socket."""
    await asyncio.gather(*(client.drop() for pair in pairs for client in pair), return_exceptions=True)
