"""The edge's limits, the per-address connection count, the open-file limit and the canned answers
written straight to a connection (before, or instead of, a request the application sees)."""
from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from http import HTTPStatus

from ..errors import ApiError
from ..jsonutil import dumps
from ..middlewares import SECURITY_HEADERS
from ..settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeLimits:
    """What one connection may do before the application sees its request."""

    per_address: int = 256  # concurrent connections of one peer address, per process
    header_timeout: float = 5.0  # seconds to send a request's whole headers
    max_header_bytes: int = 32768  # request line and headers together
    max_body_bytes: int = 1048576  # a declared Content-Length over this is refused before it is read

    @classmethod
    def from_settings(cls, settings: Settings) -> "EdgeLimits":
        """The limits configured for this process."""
        return cls(per_address=settings.max_connections_per_address, header_timeout=settings.header_timeout,
                   max_header_bytes=settings.max_header_bytes, max_body_bytes=settings.max_body_bytes)


class AddressCounts:
    """Open connections per peer address (of this process), refused past the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`; False (and nothing counted) when it is at the cap."""
        count = self._open.get(address, 0)
        if count >= self.cap:
            return False
        self._open[address] = count + 1
        if count + 1 == self.cap:
            log.warning("connection cap reached: %r has %d connections open; further ones are refused",
                        address, self.cap)
        return True

    def release(self, address: str) -> None:
        """Forget one closed connection of `address`."""
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def open(self, address: str) -> int:
        """How many connections `address` has open."""
        return self._open.get(address, 0)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection is a file); log and return both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit: could not raise the soft limit %d to %d: %s", soft, wanted, exc)
        else:
            log.info("open-file limit: soft %d raised to the hard limit %d", soft, wanted)
            return wanted, hard
    log.info("open-file limit: soft %d, hard %d", soft, hard)
    return soft, hard


def canned_response(error: ApiError) -> bytes:
    """A whole HTTP/1.1 answer in the envelope that closes the connection, to write to a transport."""
    body = dumps(error.body())
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close",
               **SECURITY_HEADERS, **error.headers}
    head = f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body
