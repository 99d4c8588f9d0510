"""The local hub: which of this process's sockets joined which room, fed by the bus."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..bus import Bus, Event, decode_event, rooms

if TYPE_CHECKING:
    from .sequencer import Sequencer as Connection

log = logging.getLogger(__name__)


class Hub:
    """Rooms of local connections; an event from the bus goes to every member of its room."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        # Lists, not sets: most rooms hold one or two sockets, and a socket joins a room once.
        self.rooms: dict[str, list["Connection"]] = {}
        bus.attach(self)

    async def join(self, conn: "Connection", room: str) -> None:
        """Add a connection to a room; return once the bus listens to it."""
        if room in conn.rooms:
            return
        conn.rooms.append(room)
        self.rooms.setdefault(room, []).append(conn)
        await self.bus.subscribe(room)

    async def leave(self, conn: "Connection", room: str) -> None:
        """Remove a connection from a room."""
        if room not in conn.rooms:
            return
        conn.rooms.remove(room)
        members = self.rooms.get(room)
        if members is not None and conn in members:
            members.remove(conn)
            if not members:
                del self.rooms[room]
        await self.bus.unsubscribe(room)

    async def leave_all(self, conn: "Connection") -> None:
        """Remove a connection from every room it joined."""
        for room in list(conn.rooms):
            await self.leave(conn, room)

    def deliver(self, room: str, data: bytes) -> None:
        """Hand one bus event to the room's local connections (decoded once for all)."""
        if not self.rooms.get(room):
            return
        try:
            event = decode_event(data)
        except Exception:
            log.warning("dropping a malformed event on %s", room)
            return
        self.deliver_event(room, event)

    def deliver_event(self, room: str, event: Event) -> None:
        """Hand a decoded event to the room's local connections."""
        members = self.rooms.get(room)
        if members:
            for conn in list(members):
                conn.deliver(event)

    def resync(self) -> None:
        """After the bus reconnected: every follower of a conversation catches up from the database."""
        for room, members in self.rooms.items():
            session_id = rooms.conversation_of(room)
            if session_id is not None:
                for conn in list(members):
                    conn.catch_up(session_id)
