"""One socket: a bounded send queue with its writer task, the per-session sequencer, the rate limit."""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..bus import STAFF, Event
from ..jsonutil import dumps
from ..keys import DB, HUB, SETTINGS
from ..services import messages, sessions
from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)

SEND_QUEUE = 1024
SLOW_PEER_CLOSE = 1013
STOP_TIMEOUT = 2.0
STOP = object()  # Try Again Later: the peer did not read its frames fast enough


@dataclass
class Seq:
    """A message's frames for this socket, in its session's order."""

    session_id: str
    seq: int
    frames: list[bytes]


@dataclass
class Follow:
    """Join a conversation's room, replay what came after `since`, then go live."""

    session_id: str
    since: int | None
    done: asyncio.Future | None = None


@dataclass
class Close:
    """Close the socket once the frames before this one are sent."""

    code: int
    message: str


@dataclass
class CatchUp:
    """Send what a followed conversation stored beyond this socket's cursor."""

    session_id: str


class Connection:
    """A WebSocket and what this process knows about it."""

    def __init__(self, app: web.Application, ws: web.WebSocketResponse, kind: str, *, queue_size: int | None = None) -> None:
        self.app = app
        self.ws = ws
        self.kind = kind  # VISITOR or STAFF
        self.id = secrets.token_hex(6)
        self.tenant_id: str | None = None
        self.session_id: str | None = None  # visitor sockets: the path's session
        self.session: dict | None = None  # visitor sockets, once joined: the session row
        self.info: dict[str, Any] = {}
        self.user_id: str | None = None
        self.presence_field: str | None = None
        self.staff: dict[str, Any] = {}  # staff sockets: id, role, name
        self.rooms: set[str] = set()
        self.cursors: dict[str, int] = {}
        settings = app[SETTINGS]
        self.limit = settings.rate_limit_ws
        size = queue_size or int(settings.extra.get("ws_send_queue", SEND_QUEUE))
        self._queue: asyncio.Queue = asyncio.Queue(size)
        self._writer: asyncio.Task | None = None
        self._closer: asyncio.Task | None = None
        self._window = 0.0
        self._count = 0
        self._rejected = 0

    @property
    def audience(self) -> str:
        """Which frames of a bus event this socket gets."""
        return self.kind

    # Sending -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task."""
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.id}")

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame for this socket only."""
        self._put(dumps(frame))

    def deliver(self, event: Event) -> None:
        """Queue a bus event's frames for this socket's audience (message frames through the sequencer)."""
        if event.exclude == self.id:
            return
        frames = event.for_audience(self.audience)
        if event.seq is not None and event.session_id is not None:
            self._put(Seq(event.session_id, event.seq, frames))
        else:
            for data in frames:
                self._put(data)
        if event.join and self.kind == STAFF:
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
        """Queue a check of the database for messages this socket has not had."""
        self._put(CatchUp(session_id))

    def _put(self, item: Any) -> bool:
        """Queue an item for the writer task; False when the socket is being dropped."""
        if self._closer is not None or self._writer is None or self._writer.done():
            return False
        try:
            self._queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            log.warning("socket %s cannot keep up; disconnecting it", self.id)
            self._writer.cancel()
            self._closer = asyncio.create_task(self.ws.close(code=SLOW_PEER_CLOSE, message=b"Client cannot keep up"))
            return False

    def _abandon(self) -> None:
        """Drop what is still queued, failing the waits of pending follows."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, Follow) and item.done is not None and not item.done.done():
                item.done.set_exception(ConnectionResetError("the socket closed"))

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is STOP or self.ws.closed:
                    return
                if isinstance(item, bytes):
                    await self.ws.send_frame(item, WSMsgType.TEXT)
                elif isinstance(item, Seq):
                    await self._send_in_order(item)
                elif isinstance(item, Follow):
                    await self._follow(item)
                elif isinstance(item, CatchUp) and item.session_id in self.cursors:
                    await self._fill(item.session_id, None)
                elif isinstance(item, Close):
                    await self.ws.close(code=item.code, message=item.message.encode()[:120])
                    return
                item = None  # an idle socket must not keep its last frame alive while it waits
        except asyncio.CancelledError:
            raise
        except (ConnectionResetError, RuntimeError) as exc:  # the peer went away mid-send
            log.debug("socket %s writer stopped: %s", self.id, exc)
        except Exception:
            log.exception("socket %s writer failed", self.id)
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR)
        finally:
            self._abandon()

    async def _send_in_order(self, item: Seq) -> None:
        cursor = self.cursors.get(item.session_id)
        if cursor is not None:
            if item.seq <= cursor:
                return  # already sent (replayed, or a duplicate)
            if item.seq > cursor + 1:
                await self._fill(item.session_id, item.seq - 1)
            self.cursors[item.session_id] = item.seq
        for data in item.frames:
            await self.ws.send_frame(data, WSMsgType.TEXT)

    async def _follow(self, item: Follow) -> None:
        try:
            await self.app[HUB].join(self, f"conversation:{item.session_id}")
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
                        await self.ws.send_frame(data, WSMsgType.TEXT)
                self.cursors[session_id] = row["seq"]

    async def stop(self) -> None:
        """Leave every room, let the writer finish what it is sending (cancel it if it hangs), stop."""
        await self.app[HUB].leave_all(self)
        writer = self._writer
        if writer is not None and not writer.done():
            if self._put(STOP):
                try:
                    await asyncio.wait_for(asyncio.shield(writer), STOP_TIMEOUT)
                except asyncio.TimeoutError:
                    pass
            await cancel_and_wait(writer)
        if self._closer is not None:
            try:
                await self._closer
            except ConnectionResetError:
                pass

    # Reading -------------------------------------------------------------------------------

    def over_limit(self) -> bool:
        """Count a frame; True when it exceeds the per-connection rate (then it is refused)."""
        now = asyncio.get_running_loop().time()
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

