"""One socket: frames written at the end of the loop tick, the per-session sequencer, the rate limit.

Frames a socket is sent go out together at the end of the loop tick (one write for, say, a
message's `ack` and its `meta_message_created`), straight from the caller: a socket has no
task of its own while it only sends. Work that must wait (joining a conversation and
replaying it, filling a gap in a session's seqs from the database, closing) starts a task that
takes everything queued after it, in order, and ends when the queue is empty. A peer whose
unsent bytes pass the send buffer limit is closed with 1013.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web

from ..bus import FOR_STAFF, Event, rooms
from ..jsonutil import dumps
from .. import observe
from ..appkeys import DB, HUB, METRICS, SETTINGS, SOCKETS
from ..services import messages, sessions
from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)

SEND_BUFFER = 4 * 1024 * 1024  # bytes the transport may hold unsent before the peer is dropped
SEND_QUEUE = 1024  # items waiting behind a database step, before the peer is dropped
SLOW_PEER_CLOSE = 1013  # Try Again Later: the peer did not read its frames fast enough
STOP_TIMEOUT = 2.0
_TEXT = 0x81  # FIN + text opcode; server frames are not masked (RFC 6455 section 5.1)
_PONG = 0x8A
PING_FRAME = b"\x89\x00"  # FIN + ping, no payload
_LEN2 = struct.Struct("!BBH").pack
_LEN8 = struct.Struct("!BBQ").pack


def text_frame(data: bytes) -> bytes:
    """One unmasked, uncompressed text frame (valid with or without permessage-deflate)."""
    size = len(data)
    if size < 126:
        return bytes((_TEXT, size)) + data
    if size < 65536:
        return _LEN2(_TEXT, 126, size) + data
    return _LEN8(_TEXT, 127, size) + data


@dataclass(slots=True)
class Seq:
    """A message's frames for this socket, in its session's order."""

    session_id: str
    seq: int
    frames: list[bytes]


@dataclass(slots=True)
class Follow:
    """Join a conversation's room, replay what came after `since`, then go live."""

    session_id: str
    since: int | None
    done: asyncio.Future | None = None


@dataclass(slots=True)
class Close:
    """Close the socket once the frames before this one are sent."""

    code: int
    message: str


@dataclass(slots=True)
class CatchUp:
    """Send what a followed conversation stored beyond this socket's cursor."""

    session_id: str


class Connection:
    """A WebSocket and what this process knows about it."""

    __slots__ = ("app", "ws", "kind", "id", "tenant_id", "session_id", "session", "origin", "since", "user_id",
                 "presence_field", "staff", "rooms", "cursors", "limit", "seen", "pinged_at", "_transport", "_out",
                 "_backlog", "_worker", "_closer", "_stopped", "_send_buffer", "_queue_max", "_window", "_count",
                 "_rejected")

    def __init__(self, app: web.Application, ws: web.WebSocketResponse, kind: str) -> None:
        self.app = app
        self.ws = ws
        self.kind = kind  # FOR_VISITORS or FOR_STAFF (its audience on the bus)
        self.id = secrets.token_hex(6)
        self.tenant_id: str | None = None
        self.session_id: str | None = None  # visitor sockets: the path's session
        self.session: dict | None = None  # visitor sockets, once joined: the session row
        self.origin: str | None = None  # visitor sockets: the handshake's Origin header
        self.since: int | None = None  # visitor sockets: the URL's ?since=
        self.user_id: str | None = None
        self.presence_field: str | None = None
        self.staff: dict[str, Any] | None = None  # staff sockets: id, role, name
        self.rooms: list[str] = []  # hub rooms joined (a handful: a list is a third of a set's size)
        self.cursors: dict[str, int] = {}
        settings = app[SETTINGS]
        self.limit = settings.rate_limit_ws
        self._send_buffer = int(settings.extra.get("ws_send_buffer", SEND_BUFFER))
        self._queue_max = int(settings.extra.get("ws_send_queue", SEND_QUEUE))
        self.seen = 0.0  # loop time of the last frame received (the heartbeat reads it)
        self.pinged_at = 0.0  # loop time of the heartbeat's last ping (0: none pending)
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] | None = None  # frames to write at the end of this tick
        self._backlog: collections.deque | None = None  # items behind a database step
        self._worker: asyncio.Task | None = None  # works through the backlog while there is one
        self._closer: asyncio.Task | None = None
        self._stopped = False
        self._window = 0.0
        self._count = 0
        self._rejected = 0

    @property
    def audience(self) -> str:
        """Which frames of a bus event this socket gets."""
        return self.kind

    # Sending -------------------------------------------------------------------------------

    def start(self, transport: asyncio.Transport) -> None:
        """Send over this (prepared) socket's transport from now on; the heartbeat looks after it."""
        self._transport = transport
        self.seen = asyncio.get_running_loop().time()
        self.app[SOCKETS].add(self)
        observe.socket_opened(self)

    def send(self, frame: dict[str, Any]) -> None:
        """Send a frame to this socket only."""
        self._put(dumps(frame))

    def deliver(self, event: Event) -> None:
        """Send a bus event's frames for this socket's audience (message frames through the sequencer)."""
        if event.exclude == self.id:
            return
        frames = event.for_audience(self.audience)
        if event.seq is not None and event.session_id is not None:
            self._put(Seq(event.session_id, event.seq, frames))
        else:
            for data in frames:
                self._put(data)
        if event.join and self.kind == FOR_STAFF:
            self._put(Follow(event.join["sessionId"], event.join.get("since")))

    async def follow(self, session_id: str, since: int | None = None) -> None:
        """Join a conversation, replay after `since` (None: only new ones), and return once live."""
        done = asyncio.get_running_loop().create_future()
        if not self._put(Follow(session_id, since, done)):
            raise ConnectionResetError("the socket is closing")
        await done

    def close_soon(self, code: int, message: str) -> None:
        """Close with `code` after the frames already queued."""
        self._put(Close(code, message))

    def catch_up(self, session_id: str) -> None:
        """Check the database for messages of a followed conversation this socket has not had."""
        self._put(CatchUp(session_id))

    @property
    def _writable(self) -> bool:
        """True while frames may still be sent: started, and neither stopped nor being dropped."""
        return not self._stopped and self._closer is None and self._transport is not None

    def _put(self, item: Any) -> bool:
        """Send an item now, or queue it behind a database step; False when the socket is being dropped."""
        if not self._writable:
            return False
        if self._backlog is not None:
            if len(self._backlog) >= self._queue_max:
                self._drop("too many frames waiting")
                return False
            self._backlog.append(item)
            return True
        if isinstance(item, bytes):
            self._emit(item)
        elif isinstance(item, Seq) and self._in_order(item):
            for data in item.frames:
                self._emit(data)
        else:  # waits on the database or on the close handshake: a task takes it and what follows
            self._backlog = collections.deque((item,))
            self._worker = asyncio.create_task(self._work(), name=f"ws-{self.id}")
        return True

    def _in_order(self, item: Seq) -> bool:
        """Advance the session's cursor when `item` is next (True: send its frames, or drop a repeat)."""
        cursor = self.cursors.get(item.session_id)
        if cursor is None:
            return True
        if item.seq <= cursor:
            item.frames = []  # already sent (replayed, or a duplicate)
            return True
        if item.seq > cursor + 1:
            return False  # a gap: fill it from the database first
        self.cursors[item.session_id] = item.seq
        return True

    def _emit(self, data: bytes) -> None:
        """Add a text frame to what this socket writes at the end of the tick."""
        self.app[METRICS].frames_out_tally[self.kind] += 1
        self._write_soon(text_frame(data))

    def _write_soon(self, frame: bytes) -> None:
        if self._out is None:
            self._out = []
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frame)

    def ping(self, now: float) -> None:
        """Send a ping (control frames may go between messages); the heartbeat waits for an answer."""
        if self._writable:
            self.pinged_at = now
            self._write_soon(PING_FRAME)

    def pong(self, payload: bytes) -> None:
        """Answer the peer's ping with its payload (at most 125 bytes, RFC 6455 section 5.5)."""
        if self._writable:
            payload = payload[:125]
            self._write_soon(bytes((_PONG, len(payload))) + payload)

    def abort(self) -> None:
        """Drop a dead peer's connection at once (no closing handshake: nobody would answer it)."""
        self._stopped = True
        self._out = None
        if self._transport is not None:
            self._transport.abort()

    def _flush(self) -> None:
        out, self._out = self._out, None
        transport = self._transport
        if not out or transport is None or transport.is_closing() or self.ws.closed:
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if transport.get_write_buffer_size() > self._send_buffer:
            self._drop("send buffer full")

    def _drop(self, why: str) -> None:
        """The peer does not read its frames: close with 1013 and send it nothing more."""
        log.warning("socket %s cannot keep up (%s); disconnecting it", self.id, why)
        self._stopped = True
        self._out = None
        if self._worker is not None:
            self._worker.cancel()
        self._closer = asyncio.create_task(self.ws.close(code=SLOW_PEER_CLOSE, message=b"Client cannot keep up"))

    async def _work(self) -> None:
        """Take the backlog in order until it is empty (then sending is direct again)."""
        backlog = self._backlog
        try:
            while backlog:
                item = backlog[0]
                if self.ws.closed:
                    return
                if isinstance(item, bytes):
                    self._emit(item)
                elif isinstance(item, Seq):
                    await self._send_in_order(item)
                elif isinstance(item, Follow):
                    await self._follow(item)
                elif isinstance(item, CatchUp):
                    if item.session_id in self.cursors:
                        await self._fill(item.session_id, None)
                elif isinstance(item, Close):
                    self._flush()
                    self._stopped = True
                    await self.ws.close(code=item.code, message=item.message.encode()[:120])
                    return
                backlog.popleft()
        except asyncio.CancelledError:
            raise
        except (ConnectionResetError, RuntimeError) as exc:  # the peer went away mid-send
            log.debug("socket %s stopped sending: %s", self.id, exc)
        except Exception:
            log.exception("socket %s failed sending", self.id)
            self._stopped = True
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR)
        finally:  # done, failed or cancelled: what is left is dropped, and sending is direct again
            if self._backlog is backlog:
                self._abandon()

    def _abandon(self) -> None:
        """End the backlog, failing the waits of pending follows if anything is left."""
        backlog, self._backlog, self._worker = self._backlog, None, None
        for item in backlog or ():
            if isinstance(item, Follow) and item.done is not None and not item.done.done():
                item.done.set_exception(ConnectionResetError("the socket closed"))

    async def _send_in_order(self, item: Seq) -> None:
        if not self._in_order(item):
            await self._fill(item.session_id, item.seq - 1)
            self.cursors[item.session_id] = item.seq
        for data in item.frames:
            self._emit(data)

    async def _follow(self, item: Follow) -> None:
        try:
            await self.app[HUB].join(self, rooms.conversation(item.session_id))
            async with self.app[DB].acquire() as conn:
                newest = await sessions.last_seq(conn, item.session_id)
            start = newest if item.since is None else min(item.since, newest)
            self.cursors[item.session_id] = start
            await self._fill(item.session_id, newest)
        except Exception as exc:
            if item.done is not None and not item.done.done():
                item.done.set_exception(exc)
            raise
        except BaseException:
            if item.done is not None:
                item.done.cancel()
            raise
        if item.done is not None and not item.done.done():
            item.done.set_result(None)

    async def _fill(self, session_id: str, upto: int | None) -> None:
        """Send the stored messages after this socket's cursor, up to `upto` (None: all)."""
        while True:
            cursor = self.cursors[session_id]
            if upto is not None and cursor >= upto:
                return
            async with self.app[DB].acquire() as conn:
                rows = await messages.messages_after(conn, session_id, cursor, upto)
            if not rows:
                return
            for row in rows:
                for audience, data in messages.frames_for(row):
                    if audience == self.audience:
                        self._emit(data)
                self.cursors[session_id] = row["seq"]
            self._flush()  # a long replay goes out page by page

    async def stop(self) -> None:
        """Leave every room, let queued work finish (cancel it if it hangs), send what is left, stop."""
        self.app[SOCKETS].discard(self)
        observe.socket_closed(self)
        await self.app[HUB].leave_all(self)
        worker = self._worker
        if worker is not None and not worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(worker), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                pass
            await cancel_and_wait(worker)
        if self._backlog is not None:
            self._abandon()
        self._flush()
        self._stopped = True
        if self._closer is not None:
            try:
                await self._closer
            except ConnectionResetError:
                pass

    # Reading -------------------------------------------------------------------------------

    def over_limit(self, now: float) -> bool:
        """Count a frame received at loop time `now`; True when it exceeds the per-connection rate (then it is refused)."""
        if now - self._window >= self.limit.seconds:
            self._window, self._count, self._rejected = now, 0, 0
        self._count += 1
        if self._count <= self.limit.count:
            return False
        self._rejected += 1
        return True

    @property
    def abusive(self) -> bool:
        """True when one window saw twice the allowed frames refused (sustained abuse)."""
        return self._rejected >= 2 * self.limit.count

