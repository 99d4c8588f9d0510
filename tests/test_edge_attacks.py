"""Attacks on a real `amoiq-chat serve` process: slowloris, a per-address connection flood, a header flood."""
from __future__ import annotations

import asyncio
import resource
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from amoiq_chat.edge import raise_open_file_limit

from .chat_fixtures import ServerProcess
from .conftest import CLI, cli_env, free_port, wait_for_port


@pytest.fixture(autouse=True)
def enough_files():
    """This test process opens hundreds of sockets too."""
    raise_open_file_limit()


def rss_bytes(pid: int) -> int:
    """The resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def healthy(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(f"{url}/api/health", timeout=aiohttp.ClientTimeout(total=5)) as resp:
        assert resp.status == 200


async def open_from(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def get_health(port: int, source: str = "127.0.0.1") -> bytes:
    """GET /api/health on a new connection from `source`; what came back (b"reset" for a reset)."""
    reader, writer = await open_from(port, source)
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # refused while the request was on its way
        return b"reset"
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, dribble: bool,
                           limit: float) -> bytes:
    """Keep sending header lines (slowly, when `dribble`) until the server closes; return what it said."""
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: a\r\n")
    said = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), 1.0)
        except asyncio.TimeoutError:
            if dribble:
                writer.write(b"X-Slow: still-here\r\n")
            continue
        except ConnectionResetError:
            return said
        if not chunk:
            return said
        said += chunk
    raise AssertionError(f"still open after {limit} s")


async def test_500_slowloris_connections_are_closed_within_15_s_while_others_are_served(settings):
    server = ServerProcess(settings, MAX_CONNECTIONS_PER_ADDRESS="1000").wait()  # default header_timeout (5 s)
    try:
        conns = [await open_from(server.port) for _ in range(500)]
        started = time.monotonic()
        attack = asyncio.gather(*(closed_by_server(r, w, dribble=True, limit=15) for r, w in conns))
        async with aiohttp.ClientSession() as session:
            served = 0
            while not attack.done():
                await healthy(session, server.url)
                served += 1
                await asyncio.wait([attack], timeout=0.2)
        answers = await attack
        assert time.monotonic() - started < 15
        assert served >= 5
        assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers)
        for _, writer in conns:
            writer.close()
    finally:
        errors = server.stop()
    assert "Traceback" not in errors, errors[-3000:]


async def test_a_connection_flood_from_one_address_is_refused_at_the_cap_while_another_is_served(settings):
    server = ServerProcess(settings, MAX_CONNECTIONS_PER_ADDRESS="50", HEADER_TIMEOUT="60").wait()
    held = []
    try:
        # wait_for_port's probe may still be counted for a moment: hold connections until one is refused
        for _ in range(60):
            reader, writer = await open_from(server.port)
            try:
                refused = await asyncio.wait_for(reader.read(), 0.3)
            except asyncio.TimeoutError:
                held.append(writer)
                continue
            writer.close()
            assert refused.startswith(b"HTTP/1.1 429") and b'"RATE_LIMIT_EXCEEDED"' in refused
            break
        else:
            raise AssertionError("60 connections from one address and none refused")
        assert 49 <= len(held) <= 50
        assert (await get_health(server.port)).startswith(b"HTTP/1.1 429")  # still at the cap
        assert (await get_health(server.port, "127.0.0.2")).startswith(b"HTTP/1.1 200")  # another address is served
        held.pop().close()  # one closes: one more is let in
        for _ in range(50):
            answer = await get_health(server.port)
            if answer.startswith(b"HTTP/1.1 200"):
                break
            assert answer in (b"", b"reset") or answer.startswith(b"HTTP/1.1 429")
            await asyncio.sleep(0.05)  # the server sees the close a moment after the client makes it
        else:
            raise AssertionError("a freed place was never given to the address again")
    finally:
        for writer in held:
            writer.close()
        errors = server.stop()
    assert "Traceback" not in errors, errors[-3000:]


async def test_memory_returns_within_20_percent_after_a_header_flood(settings):
    server = ServerProcess(settings, MAX_CONNECTIONS_PER_ADDRESS="1000").wait()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                await healthy(session, server.url)
        before = rss_bytes(server.process.pid)
        line = b"X-Flood: " + b"a" * 8000 + b"\r\n"

        async def flood() -> tuple[int, bytes]:
            """Header lines until the server hangs up: (lines sent, its answer or b"reset")."""
            reader, writer = await open_from(server.port)
            sent = 0
            try:
                writer.write(b"GET /api/health HTTP/1.1\r\nHost: a\r\n")
                while sent < 200 and not reader.at_eof():  # 1.6 MB offered; max_header_bytes is 32 KiB
                    writer.write(line)
                    await writer.drain()
                    sent += 1
                    await asyncio.sleep(0)
                return sent, await asyncio.wait_for(reader.read(), 10)
            except ConnectionError:
                return sent, b"reset"
            finally:
                writer.close()

        results = await asyncio.gather(*(flood() for _ in range(600)))
        # Every one refused by the server (its 431, or a reset when it closed on unread bytes); how many
        # lines a client wrote first says little: the kernel's buffers take them before the server reads.
        assert all(answer == b"reset" or answer.startswith(b"HTTP/1.1 431") for _, answer in results), \
            {answer[:40] for _, answer in results}
        async with aiohttp.ClientSession() as session:
            await healthy(session, server.url)
            deadline = time.monotonic() + 10
            after = rss_bytes(server.process.pid)
            while after > before * 1.2 and time.monotonic() < deadline:
                await healthy(session, server.url)
                await asyncio.sleep(0.2)
                after = rss_bytes(server.process.pid)
        assert after <= before * 1.2, f"RSS {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after"
    finally:
        errors = server.stop()
    assert "Traceback" not in errors, errors[-3000:]


def test_serve_raises_its_soft_open_file_limit_to_the_hard_one_and_logs_both(settings, tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = min(1024, hard)
    log_path = tmp_path / "serve.log"
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=cli_env(settings, LOG_LEVEL="INFO"),
                                   stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    try:
        wait_for_port(port, process)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert line.split()[3:5] == [str(hard), str(hard)], line
    finally:
        process.terminate()
        process.wait(30)
    logged = log_path.read_text()
    expected = f"open-file limit: soft {soft} raised to the hard limit {hard}" if soft < hard else \
        f"open-file limit: soft {soft}, hard {hard}"
    assert expected in logged, logged
