"""Helpers of the chat tests: tenants with widgets and agents made by SQL, socket helpers, server processes."""
from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiopg

from amoiq_chat import credentials, db
from amoiq_chat.services.tenants import create_tenant_with_admin
from amoiq_chat.settings import Settings

from .conftest import CLI, cli_env, free_port, wait_for_port

FRAME_TIMEOUT = 5.0


@dataclass
class Tenant:
    """A tenant made for a test, with its credentials."""

    id: str
    admin_id: int
    publishable_key: str
    secret_key: str
    admin_token: str
    site_key: str
    agents: list[dict] = field(default_factory=list)  # {"id", "token", "name"}
    session_secrets: dict[str, str] = field(default_factory=dict)  # sessionSecret of the sessions it started

    def keep_secret(self, sid: str, answer: dict) -> None:
        """Keep the sessionSecret an answer carries (the one that created the session)."""
        if answer.get("sessionSecret"):
            self.session_secrets[sid] = answer["sessionSecret"]

    def proof(self, sid: str) -> dict[str, str]:
        """`{"sessionSecret": ...}` for a session it started ({} otherwise)."""
        secret = self.session_secrets.get(sid)
        return {"sessionSecret": secret} if secret else {}

    def bearer(self, token: str | None = None) -> dict[str, str]:
        """An Authorization header (the publishable key by default)."""
        return {"Authorization": f"Bearer {token or self.publishable_key}"}


async def make_tenant(pool: aiopg.Pool, settings: Settings, *, agents: int = 1, allowed_domains: list[str] | None = None,
                      identity_verification: bool = False) -> Tenant:
    """A tenant with an admin, keys, one active widget and `agents` agents."""
    tag = secrets.token_hex(4)
    made = await create_tenant_with_admin(pool, username=f"admin_{tag}", email=f"admin_{tag}@example.com",
                                          password="password-123", name=f"Tenant {tag}")
    site_key = credentials.random_id("widget")
    async with db.transaction(pool) as conn:
        await db.execute(conn, "UPDATE tenants SET identity_verification = %s WHERE id = %s",
                         (identity_verification, made.tenant_id))
        await db.execute(
            conn,
            "INSERT INTO widget_configs (tenant_id, user_id, site_key, business_name, allowed_domains)"
            " VALUES (%s, %s, %s, %s, %s)",
            (made.tenant_id, made.admin["id"], site_key, f"Business {tag}", db.jsonb(allowed_domains or [])),
        )
        rows = []
        for number in range(agents):
            rows.append(await db.fetch_one(
                conn,
                "INSERT INTO agents (tenant_id, username, email, password_hash, full_name)"
                " VALUES (%s, %s, %s, 'not-a-hash', %s) RETURNING id, full_name",
                (made.tenant_id, f"agent{number}_{tag}", f"agent{number}_{tag}@example.com", f"Agent {number} {tag}"),
            ))
    admin_token = credentials.issue_token(settings, subject=str(made.admin["id"]), role=credentials.ADMIN, tenant_id=made.tenant_id)
    tenant = Tenant(made.tenant_id, made.admin["id"], made.publishable_key, made.secret_key, admin_token, site_key)
    for row in rows:
        token = credentials.issue_token(settings, subject=str(row["id"]), role=credentials.AGENT, tenant_id=made.tenant_id)
        tenant.agents.append({"id": row["id"], "token": token, "name": row["full_name"]})
    return tenant


def session_id() -> str:
    """A fresh session id."""
    return f"session_{secrets.token_hex(6)}"


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
    """The next JSON frame (fails the test after `timeout`)."""
    msg = await ws.receive(timeout=timeout)  # (not wait_for: that can lose a close frame)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
    return json.loads(msg.data)


async def until(ws: aiohttp.ClientWebSocketResponse, frame_type: str, *, skipped: list | None = None,
                timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
    """The next frame of `frame_type`; frames before it go to `skipped`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - asyncio.get_running_loop().time()))
        if frame["type"] == frame_type:
            return frame
        if skipped is not None:
            skipped.append(frame)


async def collect(ws: aiohttp.ClientWebSocketResponse, *types: str, timeout: float = FRAME_TIMEOUT) -> dict[str, dict]:
    """The next frame of each of `types`, in whatever order they come; other frames are ignored."""
    found: dict[str, dict] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while len(found) < len(types):
        frame = await recv(ws, max(0.01, deadline - asyncio.get_running_loop().time()))
        if frame["type"] in types and frame["type"] not in found:
            found[frame["type"]] = frame
    return found


async def nothing_more(ws: aiohttp.ClientWebSocketResponse, within: float = 0.3) -> list[dict]:
    """Frames that arrive within `within` seconds (a quiet socket returns [])."""
    frames = []
    try:
        while True:
            frames.append(await recv(ws, within))
    except asyncio.TimeoutError:
        return frames


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = FRAME_TIMEOUT) -> int | None:
    """Read until the socket closes; return the close code."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.ERROR):
            return ws.close_code


class ServerProcess:
    """`python -m amoiq_chat serve --port P` against the test services."""

    def __init__(self, settings: Settings, *args: str, port: int | None = None, log: Path | None = None,
                 **env: str) -> None:
        self.port = port or free_port()  # a port of its own, or the one of a process it replaces
        self.terminated = False
        env = {"RATE_LIMIT_HTTP": "100000/60", "RATE_LIMIT_AUTH": "100000/60", "RATE_LIMIT_WS": "1000/1",
               "BOT_ENABLED": "0", **env}
        # `log`: a file for its stderr (a process that logs every request would fill an unread pipe).
        self.log = log
        stderr = open(log, "wb") if log is not None else subprocess.PIPE
        self.process = subprocess.Popen([*CLI, "serve", "--port", str(self.port), *args], env=cli_env(settings, **env),
                                        stdout=subprocess.DEVNULL, stderr=stderr)
        if log is not None:
            stderr.close()

    @property
    def url(self) -> str:
        """The base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The base WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}"

    def wait(self) -> "ServerProcess":
        """Block until it accepts connections."""
        wait_for_port(self.port, self.process)
        return self

    def kill(self) -> None:
        """Kill it at once (a crash: no cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM, once: a second one would interrupt its graceful shutdown)."""
        if self.process.poll() is None and not self.terminated:
            self.process.terminate()
            self.terminated = True

    def stop(self) -> str:
        """Stop it gracefully; return what it logged."""
        self.terminate()
        if self.process.poll() is None:
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.log is not None:
            return self.log.read_text(errors="replace")
        errors = self.process.stderr.read().decode(errors="replace")
        self.process.stderr.close()
        return errors
