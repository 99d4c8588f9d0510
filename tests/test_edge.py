"""The edge (src/amoiq_chat/edge): aiohttp internals it relies on, and what a raw client sees from a
GuardedRunner serving the app in this process: parser errors, Expect: 100-continue, unmasked frames."""
from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import os

import pytest
from aiohttp import web

from amoiq_chat.edge import EdgeLimits, GuardedRunner
from amoiq_chat.edge import runner as edge_runner
from amoiq_chat.edge.headers import HeaderScan
from amoiq_chat.edge.wsmask import MaskCheck

from .chat_fixtures import session_id
from .conftest import free_port


# aiohttp's internals the adapter uses: a change in the library fails here, by name ------------------

def test_aiohttp_still_has_what_the_edge_adapter_overrides_and_reads():
    handler = web.RequestHandler
    expected = {
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "data_received": ["self", "data"],
        "set_parser": ["self", "parser", "data_received_cb"],
        "handle_error": ["self", "request", "status", "exc", "message"],
        "force_close": ["self"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(handler, name)).parameters) == params, name
    assert list(inspect.signature(handler.__init__).parameters)[:2] == ["self", "manager"]
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)
    # Names the subclass adds must not shadow aiohttp's own (its `_close` is a flag, not a method).
    own = set()
    for cls in handler.__mro__:
        own |= set(getattr(cls, "__slots__", ())) | set(vars(cls))
    added = set(vars(edge_runner.GuardedHandler)) - {"__init__", "__module__", "__doc__", "connection_made",
                                                    "connection_lost", "data_received", "set_parser", "handle_error"}
    added |= {"edge", "address", "refused", "state", "answered", "scan", "deadline", "masks", "after_headers"}
    assert not added & own, added & own


async def test_a_guarded_server_makes_guarded_handlers_with_aiohttp_s_settings(make_app):
    runner = GuardedRunner(make_app(), EdgeLimits(), access_log=None, max_field_size=4000)
    await runner.setup()
    try:
        server = runner.server
        inner = server.server
        assert isinstance(inner, web.Server) and inner._kwargs["max_field_size"] == 4000 and inner._loop
        assert inner.request_handler == server.handle  # RequestHandlers read it when they are made
        handler = server()
        assert isinstance(handler, edge_runner.GuardedHandler) and handler.max_field_size == 4000
    finally:
        await runner.cleanup()


def test_header_scan_finds_the_end_across_reads_and_counts_only_headers():
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for step in (1, 2, 3, 5, len(head)):
        scan, ends = HeaderScan(), []
        chunks = [head[i:i + step] for i in range(0, len(head), step)]
        chunks[-1] += b"body\r\n\r\n"
        for chunk in chunks:
            ends.append(scan.feed(chunk))
        assert ends[-1] is not None and scan.seen == len(head) and all(e is None for e in ends[:-1])


def _frame(payload: bytes, masked: bool = True) -> bytes:
    length = len(payload)
    head = bytes([0x81])
    bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + length.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_mask_check_follows_frames_split_anywhere():
    stream = _frame(b"a" * 10) + _frame(b"b" * 300) + _frame(b"c" * 70000) + _frame(b"d")
    for step in (1, 3, 13, 1000, len(stream)):
        check = MaskCheck()
        assert all(check.feed(stream[i:i + step]) for i in range(0, len(stream), step))
        assert not MaskCheck().feed(stream + _frame(b"x", masked=False)) or step != len(stream)
        bad, check = stream + _frame(b"x", masked=False), MaskCheck()
        assert False in [check.feed(bad[i:i + step]) for i in range(0, len(bad), step)]


# A GuardedRunner in this process, spoken to over raw sockets ---------------------------------------

@pytest.fixture
async def edge_port(make_app):
    runner = GuardedRunner(make_app(), EdgeLimits(header_timeout=5), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes; return everything the server answers until it closes (or `timeout`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        out = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                return out
            out += chunk
    except asyncio.TimeoutError:
        return out
    finally:
        writer.close()


def envelope(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head


MALFORMED = {
    "duplicate Host": (b"GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "Content-Length with Transfer-Encoding": (
        b"POST /api/auth/login HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "header line over aiohttp's limit": (b"GET /api/health HTTP/1.1\r\nHost: a\r\nX-Big: " + b"<x>" * 3000 + b"\r\n\r\n",
                                         431),
    "control character in a header": (b"GET /api/health HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: a\x01<b>\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", MALFORMED)
async def test_parser_errors_answer_the_envelope_with_one_warning_and_no_traceback(edge_port, caplog, name):
    raw, status = MALFORMED[name]
    with caplog.at_level(logging.DEBUG):
        answer = await exchange(edge_port, raw)
    got, body, head = envelope(answer)
    assert got == status and b"application/json" in head and b"X-Frame-Options: DENY" in head
    assert body["success"] is False and body["code"] in ("VALIDATION_ERROR", "PAYLOAD_TOO_LARGE")
    assert b"<x>" not in answer and b"<b>" not in answer  # nothing of the input is echoed
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name == "amoiq_chat.edge.runner", [r.getMessage() for r in warnings]
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("path", ["/api/auth/login", "/webchat/message", "/no/such/route"])
async def test_expect_continue_with_a_huge_body_gets_413_and_never_100(edge_port, path):
    answer = await exchange(edge_port, f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                                       "Expect: 100-continue\r\nContent-Length: 10000000000\r\n\r\n".encode(), timeout=2)
    assert b"100 Continue" not in answer
    status, body, _ = envelope(answer)
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE"


async def test_expect_continue_within_the_limit_still_gets_100(edge_port):
    reader, writer = await asyncio.open_connection("127.0.0.1", edge_port)
    try:
        writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 400")
    finally:
        writer.close()


async def _handshake(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def _frames_until_close(reader: asyncio.StreamReader) -> bytes:
    while True:
        opcode, payload = await _read_frame(reader)
        if opcode == 0x8:
            return payload


async def test_an_unmasked_client_frame_closes_the_socket_with_1002(edge_port):
    reader, writer = await _handshake(edge_port, f"/ws/{session_id()}")
    try:
        opcode, payload = await _read_frame(reader)  # connection_status
        assert opcode == 0x1 and json.loads(payload)["type"] == "connection_status"
        writer.write(_frame(b'{"type":"typing"}'))  # masked: answered (an error frame: no siteKey yet)
        opcode, payload = await _read_frame(reader)
        assert json.loads(payload)["type"] == "error"
        writer.write(_frame(b'{"type":"typing"}', masked=False))
        assert int.from_bytes((await _frames_until_close(reader))[:2], "big") == 1002
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection is closed
    finally:
        writer.close()


async def test_a_frame_sent_before_the_handshake_is_answered_closes_with_1002(edge_port):
    reader, writer = await asyncio.open_connection("127.0.0.1", edge_port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws/{session_id()} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode() + _frame(b"{}"))
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert int.from_bytes((await _frames_until_close(reader))[:2], "big") == 1002
    finally:
        writer.close()
