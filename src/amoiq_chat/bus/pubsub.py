"""The Redis pub/sub connection: one subscription connection per process, rooms subscribed on demand.

Rooms are the channels of `rooms.py`. Events arrive as bytes (`events.py` decodes them); this
process's own events, which it delivered to its sockets directly, are skipped.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from typing import Protocol

import redis.asyncio as aioredis

from ..tasks import cancel_and_wait
from .events import Event
from .redisio import buffered_replies, subscription_connection

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0
IDLE_PING_AFTER = 15.0
MAX_BACKOFF = 5.0
OWN_PREFIX = b'{"o":"%s"'


class _Room:
    """Local listeners of a room, and who waits for Redis to confirm its subscription."""

    __slots__ = ("refs", "waiters")

    def __init__(self) -> None:
        self.refs = 0
        self.waiters: collections.deque | None = None  # made when needed: a deque is ~600 bytes, per room


class Listener(Protocol):
    """Who gets this process's events (the local hub of sockets, `ws/hub.py`)."""

    def deliver(self, room: str, data: bytes) -> None:
        """An encoded event arrived from Redis on a room this process subscribed to."""

    def deliver_event(self, room: str, event: Event) -> None:
        """An event this process published, handed over directly (its listener skips the echo)."""

    def resync(self) -> None:
        """The subscription connection came back after a loss: events may have been missed."""


class _Nobody:
    """The listener of a bus nothing attached to."""

    def deliver(self, room: str, data: bytes) -> None:
        """Drop it."""

    def deliver_event(self, room: str, event: Event) -> None:
        """Drop it."""

    def resync(self) -> None:
        """Nothing to catch up."""


class Bus:
    """Publish events to rooms; hand the rooms this process subscribed to to its listener."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.listener: Listener = _Nobody()
        self.origin = secrets.token_hex(6)  # this process, in the header of events it delivers itself
        self._own = OWN_PREFIX % self.origin.encode()
        self._rooms: dict[str, _Room] = {}
        self._conn: aioredis.Connection | None = None
        self._send_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self.reconnected = asyncio.Event()  # set after each reconnection (tests wait on it)
        self._task: asyncio.Task | None = None
        self.received = 0
        self.published = 0  # events published through publish() (the writer's go in its own Redis call)
        self.reconnects = 0

    async def start(self) -> None:
        """Start the listener and wait until its connection is up."""
        self._task = asyncio.create_task(self._listen(), name="bus-listener")
        await asyncio.wait_for(self._connected.wait(), 10)

    @property
    def connected(self) -> bool:
        """True while the listener runs and its subscription connection is up."""
        return self._task is not None and not self._task.done() and self._connected.is_set()

    async def stop(self) -> None:
        """Cancel the listener and close its connection."""
        await cancel_and_wait(self._task)
        if self._conn is not None:
            await self._conn.disconnect()

    def attach(self, listener: Listener) -> None:
        """Hand this process's events to `listener` from now on."""
        self.listener = listener

    async def publish(self, room: str, event: bytes) -> None:
        """Publish one already-encoded event."""
        self.published += 1
        await self.redis.publish(room, event)

    def deliver_local(self, room: str, event: Event) -> None:
        """Hand an event to this process's sockets directly (it was published with `origin`)."""
        self.listener.deliver_event(room, event)

    def subscribed(self, room: str) -> bool:
        """True when this process listens to the room."""
        return room in self._rooms

    async def subscribe(self, room: str) -> None:
        """Count one more local listener of `room`; return once Redis confirmed the subscription."""
        state = self._rooms.setdefault(room, _Room())
        state.refs += 1
        if state.refs == 1:
            waiter = asyncio.get_running_loop().create_future()
            if state.waiters is None:
                state.waiters = collections.deque()
            state.waiters.append(waiter)
            await self._send("SUBSCRIBE", room)
        elif state.waiters:
            waiter = state.waiters[-1]
        else:
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("subscription to %s not confirmed in %.0f s; continuing", room, SUBSCRIBE_TIMEOUT)

    async def unsubscribe(self, room: str) -> None:
        """Count one local listener less; unsubscribe when none is left."""
        state = self._rooms.get(room)
        if state is None:
            return
        state.refs -= 1
        if state.refs <= 0:
            del self._rooms[room]
            for waiter in state.waiters or ():
                if not waiter.done():
                    waiter.set_result(None)
            await self._send("UNSUBSCRIBE", room)

    async def _send(self, *args: str) -> None:
        """Send a command on the subscription connection; on failure the listener resubscribes."""
        conn = self._conn
        if conn is None or not self._connected.is_set():
            return
        try:
            async with self._send_lock:
                await conn.send_command(*args, check_health=False)
        except (aioredis.ConnectionError, OSError, asyncio.TimeoutError) as exc:
            log.warning("bus: %s failed (%s); will resubscribe on reconnect", args[0], exc)

    async def _open(self) -> tuple[aioredis.Connection, set[str]]:
        pool = self.redis.connection_pool
        conn = subscription_connection(pool)
        rooms = list(self._rooms)
        try:
            await conn.connect()
            if rooms:  # resubscribe, and wait for every confirmation before saying we are back
                await conn.send_command("SUBSCRIBE", *rooms, check_health=False)
                for _ in rooms:
                    reply = await conn.read_response(timeout=SUBSCRIBE_TIMEOUT)
                    if reply is None:
                        raise ConnectionError("no answer to SUBSCRIBE")
                    self._handle(reply)
        except BaseException:
            await conn.disconnect()
            raise
        return conn, set(rooms)

    async def _listen(self) -> None:
        """Read the subscription connection forever; reconnect with capped backoff."""
        backoff = 0.1
        reconnected = False
        while True:
            try:
                self._conn, subscribed = await self._open()
                self._connected.set()
                joined_meanwhile = [room for room in self._rooms if room not in subscribed]
                if joined_meanwhile:  # rooms joined while we were reconnecting
                    await self._send("SUBSCRIBE", *joined_meanwhile)
                if reconnected:
                    self.reconnects += 1
                    self.listener.resync()
                    self.reconnected.set()
                backoff = 0.1
                await self._read(self._conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection trouble: reconnect; never die
                log.warning("bus listener: %s; reconnecting in %.1f s", exc or type(exc).__name__, backoff)
            self._connected.clear()
            if self._conn is not None:
                await self._conn.disconnect()
            reconnected = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _read(self, conn: aioredis.Connection) -> None:
        pinged = False
        while True:
            reply = await conn.read_response(timeout=IDLE_PING_AFTER)
            if reply is None:  # idle: a PING proves the connection is alive
                if pinged:
                    raise ConnectionError("no answer to PING")
                pinged = True
                async with self._send_lock:
                    await conn.send_command("PING", check_health=False)
                continue
            pinged = False
            self._handle(reply)
            # Replies already buffered (a writer's batch arrives together): parsed here, without
            # an await and a timeout per message.
            for reply in buffered_replies(conn):
                self._handle(reply)

    def _handle(self, reply) -> None:
        try:
            kind = reply[0]
            if kind == b"message":
                self.received += 1
                if not reply[2].startswith(self._own):  # our own were delivered locally
                    self.listener.deliver(reply[1].decode(), reply[2])
            elif kind == b"subscribe":
                state = self._rooms.get(reply[1].decode())
                if state is not None and state.waiters:
                    waiter = state.waiters.popleft()
                    if not state.waiters:
                        state.waiters = None
                    if not waiter.done():
                        waiter.set_result(None)
        except Exception:  # one bad event must not stop the listener
            log.exception("bus: could not handle %r", reply[:2] if isinstance(reply, list) else reply)

