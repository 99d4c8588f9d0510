"""The support workflow's use cases: escalate, accept, return to the assistant, close, rate.

Each change of a queue is counted on the `QueueBoard`, and the recalculator (workers/queue.py)
pushes the new figures. Each workflow event has one emitting function here (`conversation_*`,
`rating_created`), which hands it to the listeners in `events` (the webhook delivery plugs in there).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiopg

from ..credentials import AGENT
from ..bus import FOR_ALL, FOR_STAFF, FOR_VISITORS, Bus, encode_event, rooms
from ..errors import ApiError, Conflict, Forbidden
from ..jsonutil import dumps, iso, now_iso
from ..store import messages as stored_messages, support as store
from . import messages, sessions
from .queue import QueueBoard, estimated_wait
from .batches import Draft
from .writer import MessageWriter

log = logging.getLogger(__name__)

ASSISTANT_NAME = "AI Assistant"
PERSON_COMING = "I'm bringing in a person from our team. Please stay with us: you'll see your place in the queue."
# (event name, tenant id, data): what a listener of the workflow's events receives.
EventListener = Callable[[str, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Snapshot:
    """A tenant's queue at one moment: each waiting session's place and estimated wait."""

    figures: dict[str, tuple[int, int]]
    online_agents: list[int]
    accept_seconds: float | None
    assignment: str


@dataclass
class Support:
    """The workflow over the database, the bus, the queue board and the message writer."""

    pool: aiopg.Pool
    bus: Bus
    board: QueueBoard
    writer: MessageWriter
    events: list[EventListener] = field(default_factory=list)

    async def snapshot(self, conn: aiopg.Connection, tenant_id: str) -> Snapshot:
        """Compute the tenant's queue figures from the database and the online agents."""
        waiting = await store.queue(conn, tenant_id)
        settings = await store.queue_settings(conn, tenant_id)
        online = await self.board.online_agents(tenant_id)
        accept = float(settings["accept_seconds"]) if settings and settings["accept_seconds"] is not None else None
        figures = {row["session_id"]: (n, estimated_wait(n, len(online), accept)) for n, row in enumerate(waiting, 1)}
        return Snapshot(figures, online, accept, settings["assignment"] if settings else "manual")

    async def position(self, tenant_id: str, session_id: str) -> tuple[int, int] | None:
        """The place and estimated wait the session's visitor was told (None when not waiting)."""
        told = (await self.board.figures(tenant_id)).get(session_id)
        if told is not None:
            return told
        async with self.pool.acquire() as conn:  # escalated a moment ago: the same computation, now
            return (await self.snapshot(conn, tenant_id)).figures.get(session_id)

    async def escalate(self, tenant_id: str, session_id: str, reason: str | None = None) -> dict[str, Any]:
        """Put the session in its tenant's queue (again: it keeps its place); its figures and whether it is new there."""
        async with self.pool.acquire() as conn:
            row = await store.escalate(conn, tenant_id, session_id)
            if row is None:
                state = await _state_of(conn, tenant_id, session_id)
                if state["status"] == "closed":
                    raise Conflict("This chat is closed", errors={"sessionId": "closed"})
                # an agent holds it: the visitor already has a person
                return {"status": state["status"], "position": None, "estimatedWait": None, "queued": False}
        queued = row["previous"] != "waiting"
        if queued:
            await self.board.changed(tenant_id, members=True)
            try:
                await self.say(row, PERSON_COMING)
            except ApiError as exc:  # the escalation stands; only the courtesy message is missing
                log.warning("could not tell session %s that a person is coming: %s", session_id, exc.message)
            await self.conversation_escalated(row, reason)
        place = await self.position(tenant_id, session_id)
        return {"status": "waiting", "position": place[0] if place else None,
                "estimatedWait": place[1] if place else None, "queued": queued}

    async def accept(self, tenant_id: str, session_id: str, staff: dict[str, Any]) -> dict:
        """Give the chat to the agent if nobody else holds it (first wins, across processes) and tell everyone."""
        async with self.pool.acquire() as conn:
            row = await store.accept(conn, tenant_id, session_id, staff["id"])
            if row is None:
                state = await _state_of(conn, tenant_id, session_id)
                raise Conflict("This chat is closed" if state["status"] == "closed"
                               else "This chat was already accepted by another agent")
            history = await stored_messages.session_history(conn, session_id)
        newest = history[-1]["seq"] if history else 0
        accepted = {
            "type": "chat_accepted", "sessionId": session_id, "visitorName": row["visitor_name"] or "Customer",
            "businessName": row["business_name"], "messages": [messages.to_004(m) for m in history],
            "fullHistory": True, "timestamp": now_iso(),
        }
        joined = {"type": "agent_joined", "message": "A support agent has joined the chat!",
                  "agentName": staff["name"], "sessionId": session_id, "timestamp": now_iso()}
        await self.bus.publish(rooms.agent(staff["id"]), encode_event([(FOR_STAFF, dumps(accepted))],
                                                                       join={"sessionId": session_id, "since": newest}))
        await self.bus.publish(rooms.conversation(session_id), encode_event([(FOR_VISITORS, dumps(joined))]))
        await self.board.changed(tenant_id, members=row["previous"] == "waiting")
        await self.conversation_assigned(row, staff)
        return row

    async def return_to_ai(self, tenant_id: str, session_id: str, staff: dict[str, Any]) -> dict:
        """Hand a chat the agent holds (an admin: any), or a waiting one, back to the assistant."""
        left = {"type": "agent_left", "sessionId": session_id, "agentName": staff["name"], "aiMode": True,
                "message": "You're chatting with our assistant again.", "timestamp": now_iso()}
        return await self._staff_step(store.return_to_ai, tenant_id, session_id, staff, left)

    async def close(self, tenant_id: str, session_id: str, staff: dict[str, Any]) -> dict:
        """End a chat: status closed, ended_at; the visitor and the staff following it get `chat_closed`."""
        closed = {"type": "chat_closed", "sessionId": session_id, "closedBy": staff["name"], "canRate": True,
                  "message": "This chat has been closed. Thank you for contacting us!", "timestamp": now_iso()}
        row = await self._staff_step(store.close, tenant_id, session_id, staff, closed)
        await self.conversation_closed(row, staff)
        return row

    async def _staff_step(self, change: Callable[..., Awaitable[dict | None]], tenant_id: str, session_id: str,
                          staff: dict[str, Any], frame: dict[str, Any]) -> dict:
        """Apply a staff member's change to a chat no other agent holds; tell the conversation and the queue."""
        async with self.pool.acquire() as conn:
            row = await change(conn, tenant_id, session_id, _agent_id(staff))
            if row is None:
                state = await _state_of(conn, tenant_id, session_id)
                if state["status"] == "closed":
                    raise Conflict("This chat is closed", errors={"sessionId": "closed"})
                if state["ai_mode"]:
                    raise Conflict("The assistant already has this chat", errors={"sessionId": "with the assistant"})
                raise Forbidden("Another agent holds this chat", errors={"sessionId": "held by another agent"})
        await self.bus.publish(rooms.conversation(session_id), encode_event([(FOR_ALL, dumps(frame))]))
        await self.board.changed(tenant_id, members=row["previous"] == "waiting")
        return row

    async def rate(self, tenant_id: str, session_id: str, rating: int, comment: str | None) -> dict:
        """Record the visitor's rating of a closed chat, once (409 on a second try or before it is closed)."""
        async with self.pool.acquire() as conn:
            row = await store.insert_rating(conn, tenant_id, session_id, rating, comment)
            if row is None:
                state = await _state_of(conn, tenant_id, session_id)
                if state["status"] != "closed":
                    raise Conflict("A chat can be rated once it is closed", errors={"sessionId": "not closed"})
                raise Conflict("This chat was already rated", errors={"sessionId": "already rated"})
        await self.rating_created(row)
        return row

    async def say(self, session: dict, text: str) -> None:
        """Store a message of the assistant in the session (everyone gets it like any message)."""
        await self.writer.submit(Draft(tenant_id=session["tenant_id"], session_id=session["session_id"],
                                       sender_type="ai", text=text,
                                       metadata={"agentName": ASSISTANT_NAME, "isAI": True}))

    # Workflow events: one emitter each -------------------------------------------------------

    async def _emit(self, event: str, tenant_id: str, data: dict[str, Any]) -> None:
        for listener in self.events:
            try:
                await listener(event, tenant_id, data)
            except Exception:  # a failing listener must not undo the workflow step
                log.exception("listener of %s failed", event)

    async def conversation_escalated(self, row: dict, reason: str | None) -> None:
        """Emit `conversation.escalated`."""
        await self._emit("conversation.escalated", row["tenant_id"], {
            "sessionId": row["session_id"], "tenantId": row["tenant_id"], "siteKey": row["site_key"],
            "reason": reason, "escalatedAt": iso(row["escalated_at"])})

    async def conversation_assigned(self, row: dict, staff: dict[str, Any]) -> None:
        """Emit `conversation.assigned`."""
        await self._emit("conversation.assigned", row["tenant_id"], {
            "sessionId": row["session_id"], "tenantId": row["tenant_id"], "siteKey": row["site_key"],
            "agentId": staff["id"], "agentName": staff["name"], "acceptedAt": iso(row["accepted_at"])})

    async def conversation_closed(self, row: dict, staff: dict[str, Any]) -> None:
        """Emit `conversation.closed`."""
        await self._emit("conversation.closed", row["tenant_id"], {
            "sessionId": row["session_id"], "tenantId": row["tenant_id"], "siteKey": row["site_key"],
            "closedBy": {"id": staff["id"], "role": staff["role"], "name": staff["name"]},
            "agentId": row["assigned_agent_id"]})

    async def rating_created(self, row: dict) -> None:
        """Emit `rating.created`."""
        await self._emit("rating.created", row["tenant_id"], {
            "sessionId": row["session_id"], "tenantId": row["tenant_id"], "agentId": row["agent_id"],
            "rating": row["rating"], "comment": row["comment"], "createdAt": iso(row["created_at"])})


def _agent_id(staff: dict[str, Any]) -> int | None:
    """The agent whose holding counts; None for an admin (who may act on any chat of the tenant)."""
    return staff["id"] if staff["role"] == AGENT else None


async def _state_of(conn: aiopg.Connection, tenant_id: str, session_id: str) -> dict:
    """A session's state for explaining a refusal: 404 when absent, 403 when another tenant's."""
    return sessions.of_tenant(await store.session_state(conn, session_id), session_id, tenant_id)
