"""Frame handlers registered by type with their schema; the one place errors become `error` frames."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import marshmallow
from aiohttp import WSCloseCode, WSMsgType, web

from ..appkeys import METRICS
from ..errors import ApiError, RateLimited, ValidationError
from ..http import json_object, validate
from ..outages import unexpected
from .connection import Connection

log = logging.getLogger(__name__)

Handler = Callable[[Connection, dict], Awaitable[None]]
Before = Callable[[Connection, dict], Awaitable[bool]]  # True: it answered the frame itself
# A shortcut for a frame type's schema: the schema's result for the frames it knows, else None.
Fast = Callable[[dict], "dict | None"]
MAX_SHAPES = 256


def error_frame(exc: ApiError, frame: Any = None) -> dict[str, Any]:
    """The `error` frame of an ApiError, echoing the offending frame's type and clientMessageId."""
    body: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message, "errors": exc.errors}
    if isinstance(frame, dict):
        if isinstance(frame.get("type"), str):
            body["frameType"] = frame["type"]
        if isinstance(frame.get("clientMessageId"), str):
            body["clientMessageId"] = frame["clientMessageId"]
    return body


class Registry:
    """The frame types one kind of socket accepts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, tuple[marshmallow.Schema, Handler, Fast | None]] = {}
        self.before: Before | None = None  # runs before every handler (the tokenless visitor's join)
        # Schemas limited to the fields a frame actually carries (plus required and defaulted
        # ones), by frame shape: marshmallow costs per declared field, and frames carry few.
        self._shapes: dict[tuple[str, frozenset], marshmallow.Schema] = {}

    def handler(self, frame_type: str, schema: marshmallow.Schema, fast: Fast | None = None) -> Callable[[Handler], Handler]:
        """Register `fn` for frames of `frame_type`, validated by `schema` (or by `fast` when it can tell)."""

        def register(fn: Handler) -> Handler:
            self.handlers[frame_type] = (schema, fn, fast)
            return fn

        return register

    def schema_for(self, frame_type: str, schema: marshmallow.Schema, frame: dict) -> marshmallow.Schema:
        """The schema limited to this frame's shape (the whole schema for unusual shapes)."""
        fields = schema.load_fields
        present = frozenset(name for name in frame if name in fields)
        key = (frame_type, present)
        limited = self._shapes.get(key)
        if limited is None:
            if len(self._shapes) >= MAX_SHAPES:
                return schema
            needed = {name for name, f in fields.items() if f.required or f.load_default is not marshmallow.missing}
            limited = self._shapes[key] = type(schema)(only=present | needed) if present | needed else schema
        return limited

    async def dispatch(self, conn: Connection, raw: str) -> None:
        """Validate and run one text frame; any ApiError becomes an `error` frame, the socket stays open."""
        frame: Any = None
        try:
            frame = json_object(raw, "Frame", "frame")
            frame_type = frame.get("type")
            entry = self.handlers.get(frame_type) if isinstance(frame_type, str) else None
            if entry is None:
                known = ", ".join(sorted(self.handlers))
                raise ValidationError(f"Unknown frame type {frame_type!r}; expected one of {known}",
                                      errors={"type": "unknown frame type"})
            schema, handler, fast = entry
            data = fast(frame) if fast is not None else None
            if data is None:
                data = validate(self.schema_for(frame_type, schema, frame), frame)
            if self.before is not None and await self.before(conn, frame):
                return
            await handler(conn, data)
        except ApiError as exc:
            conn.send(error_frame(exc, frame))
            close_code = exc.details.get("close")
            if close_code:  # a policy refusal: say why, then close
                conn.close_soon(close_code, exc.message)
        except ConnectionResetError:
            return  # the socket is going away; nobody to tell
        except Exception as exc:
            conn.send(error_frame(unexpected(exc, log, f"{self.name} frame handler"), frame))


async def read_frames(conn: Connection, registry: Registry) -> None:
    """Read this socket until it closes, running each frame to completion before the next.

    Every frame counts against the socket's rate (text, ping, pong): past it a text frame is
    refused with an error frame and a ping goes unanswered; a second window in a row over the
    rate closes the socket with 1008, after the frames already due. A binary frame closes it
    with 1003 (the protocol is JSON text).
    """
    ws = conn.ws
    clock = asyncio.get_running_loop().time
    metrics = conn.app[METRICS]
    async for msg in ws:
        conn.seen = now = clock()  # any frame, pong or not, shows the peer is alive
        kind = msg.type
        metrics.frames_in_tally[conn.audience] += 1
        if kind == WSMsgType.BINARY:
            conn.send(error_frame(ValidationError("Binary frames are not supported; send JSON text",
                                                  errors={"frame": "binary"})))
            conn.close_soon(WSCloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
            return
        if kind == WSMsgType.ERROR:
            log.debug("socket %s closed with error %s", conn.id, ws.exception())
            return
        if conn.over_limit(now):
            metrics.rate_limited.labels("ws").inc()
            if kind == WSMsgType.TEXT:
                conn.send(error_frame(RateLimited("Too many frames; at most "
                                                  f"{conn.limit.count} per {conn.limit.seconds} s")))
            if conn.abusive:
                conn.close_soon(WSCloseCode.POLICY_VIOLATION, "Rate limit exceeded")
                return
        elif kind == WSMsgType.TEXT:
            await registry.dispatch(conn, msg.data)
        elif kind == WSMsgType.PING:
            conn.pong(msg.data)


def new_socket(max_frame_bytes: int) -> web.WebSocketResponse:
    """A WebSocketResponse with the frame size cap (over it: close 1009). Pings and pongs are
    `read_frames`' and the process's `Heartbeat`'s, not aiohttp's (two timers per socket)."""
    return web.WebSocketResponse(max_msg_size=max_frame_bytes, autoping=False)
