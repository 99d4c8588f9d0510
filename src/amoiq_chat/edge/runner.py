"""The one module that reaches into aiohttp's server internals (tests/test_edge.py fails loudly when
they change): a RequestHandler subclass that guards each connection, made by the runner's server.

Used by aiohttp (3.14): `Server.request_handler`, `Server._loop`, `Server._kwargs` (what its
`__call__` passes to `RequestHandler`), `AppRunner._make_server`, and RequestHandler's
`connection_made`, `data_received`, `connection_lost`, `set_parser` (called on a WebSocket
upgrade) and `handle_error` (its answer to a request the parser refused, and to a handler's crash).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong

from ..errors import (ApiError, HeadersTooLarge, InternalError, PayloadTooLarge, RateLimited, RequestTimeout,
                      ValidationError)
from ..http import json_response
from ..middlewares import SECURITY_HEADERS
from .headers import AWAITING, IDLE, REQUEST, WEBSOCKET, HeaderScan
from .limits import AddressCounts, EdgeLimits, canned_response, raise_open_file_limit
from .wsmask import CLOSE_PROTOCOL_ERROR, MaskCheck

log = logging.getLogger(__name__)


class Edge:
    """What every connection of one runner shares: the limits, the per-address counts, canned answers."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.counts = AddressCounts(limits.per_address)
        self.too_many = canned_response(RateLimited("Too many connections from your address",
                                                    headers={"Retry-After": "1"}))
        self.too_slow = canned_response(RequestTimeout())
        self.too_large = canned_response(HeadersTooLarge(
            f"Request headers over {limits.max_header_bytes} bytes", errors={"headers": "too large"}))


class GuardedHandler(web.RequestHandler):
    """aiohttp's protocol for one connection, with the edge's checks in front of its parser."""

    def __init__(self, manager: web.Server, edge: Edge, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.edge = edge
        self.address: str | None = None
        self.refused = False
        self.state = AWAITING
        self.answered = False  # a response went out: later refusals close without one
        self.scan = HeaderScan()
        self.deadline: asyncio.TimerHandle | None = None
        self.masks: MaskCheck | None = None
        self.after_headers = 0  # bytes after the current request's headers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if address is not None and not self.edge.counts.admit(address):
            self.refused = True
            transport.write(self.edge.too_many)  # type: ignore[attr-defined]
            transport.close()
            return
        self.address = address
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        if self.address is not None:
            self.edge.counts.release(self.address)
            self.address = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == WEBSOCKET:
            if not self.masks.feed(data):
                self._refuse(CLOSE_PROTOCOL_ERROR, "sent an unmasked WebSocket frame; closed with 1002")
                return
        elif state == REQUEST:
            self.after_headers += len(data)
        else:
            if state == IDLE:
                self._await_headers()
            end = self.scan.feed(data)
            if self.scan.seen > self.edge.limits.max_header_bytes:
                self._refuse(self.edge.too_large, "sent more than %d bytes of headers" % self.edge.limits.max_header_bytes)
                return
            if end is not None:
                self.state = REQUEST
                self.after_headers = len(data) - end
                if self.deadline is not None:
                    self.deadline.cancel()
                    self.deadline = None
        super().data_received(data)

    def set_parser(self, parser: Any, data_received_cb: Any = None) -> None:
        super().set_parser(parser, data_received_cb)
        self.state, self.masks = WEBSOCKET, MaskCheck()
        if self.after_headers:  # RFC 6455 4.1: a client waits for the handshake's answer before sending
            self._refuse(CLOSE_PROTOCOL_ERROR, "sent data before its WebSocket handshake was answered")

    def request_done(self) -> None:
        """The application answered the current request: what comes next is a new request's headers."""
        self.answered = True
        if self.state == REQUEST:
            self.state = IDLE

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to a request its parser refused (or to a crash): the envelope, no echo of the input."""
        if status >= 500:
            log.error("unhandled error on %s %r", request.method, request.rel_url, exc_info=exc)
            error: ApiError = InternalError()
        else:
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING  # scanners, TLS probes
            log.log(level, "refused a malformed request from %r: %s %r", request.remote, type(exc).__name__,
                    str(getattr(exc, "message", exc))[:200])
            error = HeadersTooLarge() if isinstance(exc, LineTooLong) else ValidationError("Malformed HTTP request")
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; cannot send the error")
        response = json_response(error.body(), status=error.status, headers=SECURITY_HEADERS)
        response.force_close()
        return response

    def _await_headers(self) -> None:
        self.state = AWAITING
        self.scan = HeaderScan()
        self.deadline = self._loop.call_later(self.edge.limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self.deadline = None
        if self.state == AWAITING:
            self._refuse(self.edge.too_slow if self.scan.seen else b"", "did not send its request headers in time",
                        level=logging.DEBUG)

    def _refuse(self, answer: bytes, why: str, level: int = logging.INFO) -> None:
        log.log(level, "connection from %r %s", self.address, why)
        transport = self.transport
        if transport is not None:
            if answer and (not self.answered or answer is CLOSE_PROTOCOL_ERROR):
                transport.write(answer)
            transport.close()
        self.force_close()


class GuardedServer:
    """The runner's `web.Server`, making GuardedHandlers and refusing oversized declared bodies."""

    def __init__(self, server: web.Server, edge: Edge) -> None:
        self.server = server
        self.edge = edge
        self.app_handler = server.request_handler
        server.request_handler = self.handle  # read by each RequestHandler as it is made

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self.server, self.edge, loop=self.server._loop, **self.server._kwargs)

    def __getattr__(self, name: str) -> Any:  # shutdown, pre_shutdown, connections, ...
        return getattr(self.server, name)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Refuse a declared body over the limit (before aiohttp answers `Expect: 100-continue`), else the app."""
        try:
            length = request.content_length
            if length is not None and length > self.edge.limits.max_body_bytes:
                error = PayloadTooLarge(f"Request body over {self.edge.limits.max_body_bytes} bytes",
                                        errors={"body": "too large"})
                response = json_response(error.body(), status=413, headers=SECURITY_HEADERS)
                response.force_close()
                return response
            return await self.app_handler(request)
        finally:
            protocol = request.protocol
            if isinstance(protocol, GuardedHandler):
                protocol.request_done()


class GuardedRunner(web.AppRunner):
    """A web.AppRunner whose connections pass the edge (see the package's docstring)."""

    def __init__(self, app: web.Application, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.edge = Edge(limits)

    async def setup(self) -> None:
        """Raise the open-file limit, then set up as aiohttp does."""
        raise_open_file_limit()
        await super().setup()

    async def _make_server(self) -> Any:
        return GuardedServer(await super()._make_server(), self.edge)
