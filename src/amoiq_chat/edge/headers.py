"""Where a request's headers end, found in the bytes as they arrive (the edge's deadline and byte cap)."""
from __future__ import annotations

import re

# What a connection is doing, as the edge sees it.
AWAITING = 0  # its request headers are coming (the deadline runs)
REQUEST = 1  # headers complete: the body and the application's answer
IDLE = 2  # answered; the next byte starts the next request's headers
WEBSOCKET = 3  # upgraded: client frames, checked for masks

_END = re.compile(rb"\r?\n\r?\n")


class HeaderScan:
    """Counts a request's header bytes until the empty line that ends them."""

    __slots__ = ("seen", "_tail")

    def __init__(self) -> None:
        self.seen = 0
        self._tail = b""  # the last bytes of the previous read: the end may straddle two

    def feed(self, data: bytes) -> int | None:
        """Take the next bytes; the offset in `data` just past the headers' end, or None while they go on."""
        tail = self._tail
        found = _END.search(tail + data)
        if found is None:
            self.seen += len(data)
            self._tail = (tail + data)[-3:]
            return None
        end = found.end() - len(tail)
        self.seen += end
        return end
