"""Events on the bus: frames already serialised, tagged by audience, encoded once for every process.

An event on the wire is one line of JSON header, then one frame per line (orjson never emits a
raw newline); the header says which audience each frame is for, so the receiving process hands
the same bytes to every local socket of that audience.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..jsonutil import dumps, loads

# Audiences: which sockets get a frame of an event (roles are credentials.ADMIN, AGENT, ...).
FOR_VISITORS, FOR_STAFF, FOR_ALL = "v", "s", "a"


@dataclass
class Event:
    """A decoded bus event: frames by audience, and for messages the session and seq."""

    frames: list[tuple[str, bytes]]
    session_id: str | None = None
    seq: int | None = None
    join: dict | None = None  # {"sessionId", "since"}: staff sockets that get it join that room
    exclude: str | None = None  # a connection id that must not get it (typing echo)
    close: dict | None = None  # {"code", "reason"}: sockets that get it close after its frames (revocation)

    def for_audience(self, audience: str) -> list[bytes]:
        """The frames one kind of socket receives."""
        return [data for who, data in self.frames if who == FOR_ALL or who == audience]


def encode_event(frames: Iterable[tuple[str, bytes]], *, session_id: str | None = None, seq: int | None = None,
                 join: dict | None = None, exclude: str | None = None, close: dict | None = None,
                 origin: str | None = None) -> bytes:
    """Serialise an event once: header line, then each frame's bytes on its own line.

    `origin` (first in the header) marks an event its publishing process delivered to its own
    sockets already: that process's listener skips it.
    """
    frames = list(frames)
    header: dict = {"o": origin} if origin is not None else {}
    header["a"] = "".join(who for who, _ in frames)
    if session_id is not None:
        header["s"] = session_id
    if seq is not None:
        header["q"] = seq
    if join is not None:
        header["j"] = join
    if exclude is not None:
        header["x"] = exclude
    if close is not None:
        header["c"] = close
    return b"\n".join([dumps(header), *(data for _, data in frames)])


def decode_event(data: bytes) -> Event:
    """Parse what encode_event made (raises ValueError on anything else)."""
    lines = data.split(b"\n")
    header = loads(lines[0])
    audiences = header["a"]
    if not isinstance(audiences, str) or len(audiences) != len(lines) - 1:
        raise ValueError("frame count does not match the header")
    return Event(list(zip(audiences, lines[1:])), header.get("s"), header.get("q"), header.get("j"), header.get("x"),
                 header.get("c"))
