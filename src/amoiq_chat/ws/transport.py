"""The sending side of one socket: frames written at the end of the loop tick, pings, slow peers.

Frames a socket is sent go out together at the end of the loop tick (one write for, say, a
message's `ack` and its `meta_message_created`), straight from the caller: a socket has no
task of its own while it only sends. A peer whose unsent bytes pass the send buffer limit is
closed with 1013. What to send, and in which order, is the sequencer's (`sequencer.py`).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import struct
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..jsonutil import dumps

log = logging.getLogger(__name__)

SLOW_PEER_CLOSE = 1013  # Try Again Later: the peer did not read its frames fast enough
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


class Socket:
    """A prepared WebSocket's sending side: text frames, pings and pongs, closing, dropping."""

    __slots__ = ("ws", "id", "seen", "pinged_at", "_transport", "_writer", "_out", "_closer", "_stopped",
                 "_send_buffer", "_sent", "_kind")

    def __init__(self, ws: web.WebSocketResponse, send_buffer: int, sent: collections.Counter, kind: str) -> None:
        self.ws = ws
        self.id = secrets.token_hex(6)
        self.seen = 0.0  # loop time of the last frame received (the heartbeat reads it)
        self.pinged_at = 0.0  # loop time of the heartbeat's last ping (0: none pending)
        self._transport: asyncio.Transport | None = None
        self._writer: AbstractStreamWriter | None = None  # the request's, for waiting until the peer drains
        self._out: list[bytes] | None = None  # frames to write at the end of this tick
        self._closer: asyncio.Task | None = None
        self._stopped = False
        self._send_buffer = send_buffer
        self._sent = sent  # text frames written, by socket kind (the process's metrics read it)
        self._kind = kind

    def start(self, request: web.Request) -> None:
        """Send over this (prepared) socket's connection from now on."""
        self._transport, self._writer = request.transport, request.writer
        self.seen = asyncio.get_running_loop().time()

    @property
    def writable(self) -> bool:
        """True while frames may still be sent: started, and neither stopped nor being dropped."""
        return not self._stopped and self._closer is None and self._transport is not None

    def send(self, frame: dict[str, Any]) -> None:
        """Send a frame to this socket only."""
        self.put(dumps(frame))

    def put(self, data: bytes) -> bool:
        """Send already-serialised frame bytes (subclasses order them first); False when dropped."""
        if not self.writable:
            return False
        self.emit(data)
        return True

    def emit(self, data: bytes) -> None:
        """Add a text frame to what this socket writes at the end of the tick."""
        self._sent[self._kind] += 1
        self._write_soon(text_frame(data))

    def _write_soon(self, frame: bytes) -> None:
        if self._out is None:
            self._out = []
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(frame)

    def ping(self, now: float) -> None:
        """Send a ping (control frames may go between messages); the heartbeat waits for an answer."""
        if self.writable:
            self.pinged_at = now
            self._write_soon(PING_FRAME)

    def pong(self, payload: bytes) -> None:
        """Answer the peer's ping with its payload (at most 125 bytes, RFC 6455 section 5.5)."""
        if self.writable:
            payload = payload[:125]
            self._write_soon(bytes((_PONG, len(payload))) + payload)

    def flush(self) -> None:
        """Write what this tick queued, in one write; drop the peer when its unsent bytes pile up."""
        out, self._out = self._out, None
        transport = self._transport
        if not out or transport is None or transport.is_closing() or self.ws.closed:
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if transport.get_write_buffer_size() > self._send_buffer:
            self.drop("send buffer full")

    async def drained(self) -> None:
        """Return once the peer has taken what was written, down to the transport's low-water mark."""
        self.flush()
        if self._writer is not None and self.writable:
            await self._writer.drain()

    def abort(self) -> None:
        """Drop a dead peer's connection at once (no closing handshake: nobody would answer it)."""
        self._stopped = True
        self._out = None
        if self._transport is not None:
            self._transport.abort()

    def drop(self, why: str) -> None:
        """The peer does not read its frames: close with 1013 and send it nothing more."""
        log.warning("socket %s cannot keep up (%s); disconnecting it", self.id, why)
        self._stopped = True
        self._out = None
        self._closer = asyncio.create_task(self.ws.close(code=SLOW_PEER_CLOSE, message=b"Client cannot keep up"))

    async def close(self, code: int, message: str) -> None:
        """Send what is queued, then close with `code` (the closing handshake)."""
        self.flush()
        self._stopped = True
        await self.ws.close(code=code, message=message.encode()[:120])

    async def finish(self) -> None:
        """Send what is left, stop sending, and wait for a drop's close to end."""
        self.flush()
        self._stopped = True
        if self._closer is not None:
            try:
                await self._closer
            except ConnectionResetError:
                pass
