"""A server process for the hostile-input suite, with a tenant made through its API, and a minimal
blocking WebSocket client (masked text frames out, the heartbeat's pings answered)."""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
from typing import Any

from .conftest import CLI, cli_env, free_port, wait_for_port
from .factories import unique


class Server:
    """One `amoiq-chat serve` for the module, its log in a file, and a tenant made through its API."""

    def __init__(self, settings, log_path) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = cli_env(settings, RATE_LIMIT_HTTP="1000000/60", RATE_LIMIT_AUTH="1000000/60",
                      RATE_LIMIT_WS="100000/1", MAX_CONNECTIONS_PER_ADDRESS="10000")
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen([*CLI, "serve", "--port", str(self.port)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        wait_for_port(self.port, self.process)
        self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, dict]:
        """One request (JSON body as json.dumps writes it: NUL and surrogates as \\u escapes)."""
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            self.http.request(method, path, body=data, headers=all_headers)
            resp = self.http.getresponse()
        except (http.client.HTTPException, ConnectionError):
            self.http.close()  # the server closed a keep-alive connection: once more on a new one
            self.http.request(method, path, body=data, headers=all_headers)
            resp = self.http.getresponse()
        raw = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            self.http.close()
        return resp.status, json.loads(raw) if raw else {}

    def setup_tenant(self) -> None:
        """An admin, a widget, two agents (one on a socket holding a chat), a session and a visitor token."""
        name = unique("hostile")
        _, body = self.call("POST", "/api/auth/register",
                            {"username": name, "email": f"{name}@example.com", "password": "a-long-pass-9"})
        data = body["data"]
        self.tenant_id, self.admin = data["user"]["tenantId"], {"Authorization": f"Bearer {data['token']}"}
        self.pk = {"Authorization": f"Bearer {data['tenant']['publishableKey']}"}
        _, body = self.call("POST", "/api/widgets", {"business_name": "Shop"}, self.admin)
        self.site_key = body["data"]["widget"]["site_key"]
        agents = []
        for n in range(2):
            email = f"{name}.agent{n}@example.com"
            status, body = self.call("POST", "/api/agents", {"username": f"{name}_a{n}", "email": email,
                                                             "password": "a-long-pass-9", "full_name": "Agent"},
                                     self.admin)
            assert status == 201, body
            agents.append(body["data"]["agent"]["id"])
        self.socket_agent, self.edited_agent = agents
        _, body = self.call("POST", "/api/auth/agent-login",
                            {"email": f"{name}.agent0@example.com", "password": "a-long-pass-9"})
        self.agent_token = body["data"]["token"]
        _, body = self.call("POST", "/api/chat/session", {"tenantId": self.tenant_id, "siteKey": self.site_key}, self.pk)
        self.session_id, self.session_secret = body["sessionId"], body["sessionSecret"]
        _, body = self.call("POST", "/api/chat/anonymous-token", {"tenantId": self.tenant_id, "sessionId": self.session_id,
                                                                  "sessionSecret": self.session_secret}, self.pk)
        self.visitor_token = body["token"]

    def socket_path(self, kind: str) -> str:
        """The URL path of a socket: `agent`, `visitor` (with a token) or `tokenless` (a new session)."""
        if kind == "agent":
            return f"/ws/agent/{self.socket_agent}?token={self.agent_token}"
        if kind == "visitor":
            return f"/ws/{self.session_id}?token={self.visitor_token}"
        return f"/ws/{unique('tokenless').replace('_', '-')}"

    def stop(self) -> str:
        """Stop the server; return its log."""
        self.http.close()
        self.process.terminate()
        self.process.wait(30)
        self.log.close()
        return self.log_path.read_text(errors="replace")


class Socket:
    """A minimal blocking WebSocket client: masked text frames out, frames in."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert self.receive()["type"] == "connection_status"

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the socket"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the socket"
            self.buffer += chunk
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def send(self, raw: bytes, opcode: int = 0x1) -> None:
        key = os.urandom(4)
        length = len(raw)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | length]) if length < 126 else
                                         bytes([0x80 | 126]) + length.to_bytes(2, "big"))
        self.sock.sendall(head + key + bytes(b ^ key[i % 4] for i, b in enumerate(raw)))

    def receive(self) -> dict:
        """The next text frame, as JSON (the server's heartbeat pings are answered on the way)."""
        while True:
            first, second = self._take(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._take(2), "big")
            elif length == 127:
                length = int.from_bytes(self._take(8), "big")
            payload = self._take(length)
            if first & 0x0F == 0x9:
                self.send(payload, opcode=0xA)
                continue
            assert first & 0x0F == 0x1, (first, payload)
            return json.loads(payload)

    def exchange(self, frame: dict) -> list[dict]:
        """Send a frame, then a barrier (an unknown type, always answered); return what came between."""
        self.send(json.dumps(frame).encode())
        self.send(b'{"type": "barrier"}')
        got = []
        while True:
            answer = self.receive()
            if answer.get("type") == "error" and answer.get("frameType") == "barrier":
                return got
            got.append(answer)

    def close(self) -> None:
        self.sock.close()


def fill(server: Server, template: Any) -> Any:
    """The template with {u} (unique), {tenant_id}, {site_key}, {session_id}, {edited_agent} filled in."""
    values = {"u": unique("h"), "tenant_id": server.tenant_id, "site_key": server.site_key,
              "session_id": server.session_id, "edited_agent": server.edited_agent}
    return json.loads(json.dumps(template).replace("{u}", values["u"]).replace(
        "{tenant_id}", values["tenant_id"]).replace("{site_key}", values["site_key"]).replace(
        "{session_id}", values["session_id"]).replace("{edited_agent}", str(values["edited_agent"])))
