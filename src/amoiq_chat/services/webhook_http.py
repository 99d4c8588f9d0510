"""Outgoing webhook posts: Standard Webhooks signatures, the SSRF guard, one attempt, the retry schedule.

The guard checks the address each connection is about to use (a socket factory of aiohttp's
connector), so a name that resolves to a private address today, though it did not when the
endpoint was made, is refused too; literal IPs and resolved names pass the same check.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
import socket
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from .. import __version__

USER_AGENT = f"amoiq-chat/{__version__}"
SECRET_PREFIX = "whsec_"
BODY_READ_MAX = 4096  # bytes of a receiver's answer read at most (kept for the deliveries route)
ERROR_MAX = 500  # characters of an answer or error kept per attempt
JITTER = 0.2  # each retry delay is the schedule's, +-20 %


class BlockedAddress(OSError):
    """A webhook target that resolves to an address webhooks may not reach."""


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: whsec_ + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the bytes of its base64 after whsec_; a configured secret without
    the prefix (WEBHOOK_SECRET) is used as its UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):] + "==")
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` (Standard Webhooks)."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(signing: list[str], msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one post: every secret in `signing` signs it (two during a rotation's overlap)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": " ".join(sign(s, msg_id, stamp, body) for s in signing),
            "User-Agent": USER_AGENT, "Content-Type": "application/json"}


def address_allowed(address: str) -> bool:
    """True for a public unicast address; loopback, private, link-local (cloud metadata), CGNAT,
    multicast and reserved addresses are not (an IPv4-mapped IPv6 address is judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def guarded_socket(allow_private: bool):
    """aiohttp's socket factory, refusing connections to addresses webhooks may not reach."""
    def factory(addr_info: tuple) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        if not allow_private and not address_allowed(sockaddr[0]):
            raise BlockedAddress(f"refused: {sockaddr[0]} is a private, loopback or reserved address")
        return socket.socket(family, kind, proto)
    return factory


async def check_url(url: str, allow_private: bool) -> str | None:
    """Why a webhook URL may not be used (None when it may): https only (http too when private
    targets are allowed), a host, no credentials, and every address it resolves to public."""
    try:
        parsed = URL(url)
    except ValueError:
        return "is not a valid URL"
    if parsed.scheme not in (("https", "http") if allow_private else ("https",)):
        return "must start with https://"
    if not parsed.host or not parsed.is_absolute():
        return "must name a host"
    if parsed.user or parsed.password:
        return "must not carry credentials"
    if allow_private:
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return "host cannot be resolved"
    blocked = sorted({info[4][0] for info in infos if not address_allowed(info[4][0])})
    return f"resolves to a private, loopback or reserved address ({', '.join(blocked)})" if blocked else None


@dataclass
class Outcome:
    """What one attempt got: the receiver's status (None when none came), an error, how long it took."""

    status: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def next_delay(schedule: tuple[float, ...], attempts: int, outcome: Outcome) -> float:
    """Seconds until the next attempt after `attempts` failed ones: the schedule's delay with jitter, or
    a longer Retry-After of a 429/503 (capped at the schedule's longest delay)."""
    delay = schedule[min(attempts, len(schedule)) - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    if outcome.status in (429, 503) and outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, max(schedule)))
    return delay


class Poster:
    """The one HTTP client of a process's webhook posts: guarded connections, no redirects, bounded reads."""

    def __init__(self, timeout: float, allow_private: bool, limit: int = 100) -> None:
        self.timeout = timeout
        connector = aiohttp.TCPConnector(limit=limit, socket_factory=guarded_socket(allow_private))
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                             auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        """POST once; never raises for the receiver's failures (they are the outcome)."""
        started = time.monotonic()
        status: int | None = None
        after = None
        try:
            async with self.session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                status, after = resp.status, retry_after(resp.headers.get("Retry-After"))
                answer = await read_some(resp)
            error = None if 200 <= status < 300 else f"HTTP {status}: {answer.decode(errors='replace')}"
        except asyncio.TimeoutError:
            error = f"timed out after {self.timeout:g} s" + ("" if status is None else f" (HTTP {status})")
        except aiohttp.ClientConnectorError as exc:
            error = str(exc.os_error) if isinstance(exc.os_error, BlockedAddress) else f"connection failed: {exc}"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        return Outcome(status, error[:ERROR_MAX] if error else None,
                       int((time.monotonic() - started) * 1000), after)

    async def close(self) -> None:
        """Close the client's connections."""
        await self.session.close()


async def read_some(resp: aiohttp.ClientResponse) -> bytes:
    """At most BODY_READ_MAX bytes of an answer (a receiver may send gigabytes; they stay unread)."""
    data = b""
    while len(data) < BODY_READ_MAX:
        chunk = await resp.content.read(BODY_READ_MAX - len(data))
        if not chunk:
            break
        data += chunk
    return data
