"""A socket's conversations in order: per-session seq cursors, gaps filled and replays sent page by page.

Message frames pass a per-session cursor: older seqs are dropped, a jump is filled from the
store first (which is also how `since` replays, and how two processes writing to one session
stay in order). Work that must wait (joining a conversation and replaying it, filling a gap,
closing) runs in a task that takes what was queued behind it, in order, and ends when the queue
is empty: an idle socket has no task of its own. Replays go out a page at a time (at most
PAGE_MESSAGES messages and about PAGE_BYTES), each page once the peer has taken the one before.
The messages come from a `ReplaySource` the socket is given; this module runs no SQL.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSCloseCode, web

from ..bus import FOR_STAFF, Event, rooms
from ..jsonutil import dumps
from ..tasks import cancel_and_wait
from .transport import Socket

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0
PAGE_MESSAGES = 50  # messages read from the store at once for a replay
PAGE_BYTES = 64 * 1024  # a replay page ends once this much is written; the next waits for the peer


class Rooms(Protocol):
    """The local hub, as a socket uses it (`hub.py`)."""

    async def join(self, conn: Any, room: str) -> None:
        """Add the socket to a room; return once the bus listens to it."""

    async def leave_all(self, conn: Any) -> None:
        """Remove the socket from every room it joined."""


class ReplaySource(Protocol):
    """Where a socket reads the stored messages it missed."""

    async def last_seq(self, session_id: str) -> int:
        """The seq of the session's newest stored message (0 when none)."""

    async def after(self, session_id: str, after: int, upto: int | None, limit: int) -> list[dict]:
        """Up to `limit` stored messages with after < seq <= upto (None: no bound), in seq order."""

    def frames(self, row: dict) -> list[tuple[str, bytes]]:
        """A stored message's frames, by audience."""


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
    status: dict | None = None  # sent once live, with `lastSeq` (the newest seq when it joined)


@dataclass(slots=True)
class Close:
    """Close the socket once the frames before this one are sent."""

    code: int
    message: str


@dataclass(slots=True)
class CatchUp:
    """Send what a followed conversation stored beyond this socket's cursor."""

    session_id: str


class Sequencer(Socket):
    """A socket that receives its conversations' messages once each, in seq order."""

    __slots__ = ("audience", "cursors", "rooms", "_source", "_hub", "_backlog", "_worker", "_queue_max")

    def __init__(self, ws: web.WebSocketResponse, audience: str, source: ReplaySource, hub: Rooms, *,
                 send_buffer: int, queue_max: int, sent: collections.Counter) -> None:
        super().__init__(ws, send_buffer, sent, audience)
        self.audience = audience  # which frames of a bus event this socket gets (FOR_VISITORS, FOR_STAFF)
        self.cursors: dict[str, int] = {}
        self.rooms: list[str] = []  # hub rooms joined (a handful: a list is a third of a set's size)
        self._source = source
        self._hub = hub
        self._backlog: collections.deque | None = None  # items behind a step that waits
        self._worker: asyncio.Task | None = None  # works through the backlog while there is one
        self._queue_max = queue_max

    def deliver(self, event: Event) -> None:
        """Send a bus event's frames for this socket's audience (message frames through the cursor)."""
        if event.exclude == self.id:
            return
        frames = event.for_audience(self.audience)
        if event.seq is not None and event.session_id is not None:
            self.put(Seq(event.session_id, event.seq, frames))
        else:
            for data in frames:
                self.put(data)
        if event.join and self.audience == FOR_STAFF:
            self.put(Follow(event.join["sessionId"], event.join.get("since")))
        if event.close:
            self.put(Close(event.close["code"], event.close["reason"]))

    async def follow(self, session_id: str, since: int | None = None, status: dict | None = None) -> None:
        """Join a conversation, replay after `since` (None: only new ones), send `status` (with
        `lastSeq`) if given, and return once live: every message after lastSeq comes after it."""
        done = asyncio.get_running_loop().create_future()
        if not self.put(Follow(session_id, since, done, status)):
            raise ConnectionResetError("the socket is closing")
        await done

    def close_soon(self, code: int, message: str) -> None:
        """Close with `code` after the frames already queued."""
        self.put(Close(code, message))

    def catch_up(self, session_id: str) -> None:
        """Check the store for messages of a followed conversation this socket has not had."""
        self.put(CatchUp(session_id))

    def put(self, item: Any) -> bool:
        """Send an item now, or queue it behind a step that waits; False when the socket is being dropped."""
        if not self.writable:
            return False
        if self._backlog is not None:
            if len(self._backlog) >= self._queue_max:
                self.drop("too many frames waiting")
                return False
            self._backlog.append(item)
            return True
        if isinstance(item, bytes):
            self.emit(item)
        elif isinstance(item, Seq) and self._in_order(item):
            for data in item.frames:
                self.emit(data)
        else:  # waits on the store or on the close handshake: a task takes it and what follows
            self._backlog = collections.deque((item,))
            self._worker = asyncio.create_task(self._work(), name=f"ws-{self.id}")
        return True

    async def spend_page(self) -> None:
        """Called before each replay page after the first: a subclass may make it wait (a budget)."""

    def drop(self, why: str) -> None:
        """Close a peer that does not keep up, and stop the work queued for it."""
        super().drop(why)
        if self._worker is not None:
            self._worker.cancel()

    def _in_order(self, item: Seq) -> bool:
        """Advance the session's cursor when `item` is next (True: send its frames, or drop a repeat)."""
        cursor = self.cursors.get(item.session_id)
        if cursor is None:
            return True
        if item.seq <= cursor:
            item.frames = []  # already sent (replayed, or a duplicate)
            return True
        if item.seq > cursor + 1:
            return False  # a gap: fill it from the store first
        self.cursors[item.session_id] = item.seq
        return True

    async def _work(self) -> None:
        """Take the backlog in order until it is empty (then sending is direct again)."""
        backlog = self._backlog
        try:
            while backlog:
                item = backlog[0]
                if self.ws.closed:
                    return
                if isinstance(item, bytes):
                    self.emit(item)
                elif isinstance(item, Seq):
                    await self._send_in_order(item)
                elif isinstance(item, Follow):
                    await self._follow(item)
                elif isinstance(item, CatchUp):
                    if item.session_id in self.cursors:
                        await self._fill(item.session_id, None)
                elif isinstance(item, Close):
                    await self.close(item.code, item.message)
                    return
                backlog.popleft()
        except asyncio.CancelledError:
            raise
        except (ConnectionResetError, RuntimeError) as exc:  # the peer went away mid-send
            log.debug("socket %s stopped sending: %s", self.id, exc)
        except Exception:
            log.exception("socket %s failed sending", self.id)
            await self.close(WSCloseCode.INTERNAL_ERROR, "")
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
            self.emit(data)

    async def _follow(self, item: Follow) -> None:
        try:
            await self._hub.join(self, rooms.conversation(item.session_id))
            newest = await self._source.last_seq(item.session_id)
            start = newest if item.since is None else min(item.since, newest)
            self.cursors[item.session_id] = start
            await self._fill(item.session_id, newest)
            if item.status is not None:
                self.emit(dumps({**item.status, "lastSeq": newest}))
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
        """Send the stored messages after this socket's cursor, up to `upto` (None: all), page by page."""
        rows: collections.deque = collections.deque()
        first = True
        while True:
            if not rows:
                cursor = self.cursors[session_id]
                if upto is not None and cursor >= upto:
                    return
                rows.extend(await self._source.after(session_id, cursor, upto, PAGE_MESSAGES))
                if not rows:
                    return
            if not first:
                await self.spend_page()
                await self.drained()  # the next page leaves once the peer has taken this one
            first = False
            written = 0
            while rows and written < PAGE_BYTES:
                row = rows.popleft()
                for audience, data in self._source.frames(row):
                    if audience == self.audience:
                        self.emit(data)
                        written += len(data)
                self.cursors[session_id] = row["seq"]
            self.flush()

    async def stop(self) -> None:
        """Leave every room, let queued work finish (cancel it if it hangs), send what is left, stop."""
        await self._hub.leave_all(self)
        worker = self._worker
        if worker is not None and not worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(worker), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                pass
            await cancel_and_wait(worker)
        if self._backlog is not None:
            self._abandon()
        await self.finish()
