"""RFC 6455 section 5.1: a server closes the connection (1002) when a client frame is not masked.
aiohttp's reader does not check; this follows the client's frame headers as the bytes arrive."""
from __future__ import annotations

# A close frame with status 1002 (protocol error), as a server sends it (unmasked).
CLOSE_PROTOCOL_ERROR = b"\x88\x02\x03\xea"


class MaskCheck:
    """Follows a client's WebSocket frames across reads; `feed` says whether every frame so far is masked."""

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._head = b""  # a frame header split across reads
        self._skip = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> bool:
        """Take the next bytes from the client; False once a frame without the mask bit is seen."""
        pos, end = 0, len(data)
        while True:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
            if pos >= end:
                return True
            old = len(self._head)
            head = self._head + data[pos:pos + 14 - old]
            if len(head) >= 2 and not head[1] & 0x80:
                return False
            size = head[1] & 0x7F if len(head) >= 2 else 0
            header_len = 2 + (2 if size == 126 else 8 if size == 127 else 0) + 4
            if len(head) < 2 or len(head) < header_len:
                self._head = head  # all that is left of `data`; the rest of the header comes next
                return True
            if size >= 126:
                size = int.from_bytes(head[2:header_len - 4], "big")
            pos += header_len - old
            self._head = b""
            self._skip = size
