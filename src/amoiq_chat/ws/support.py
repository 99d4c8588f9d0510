"""The support workflow's frames: the visitor's `escalate` and `rating`, the staff's `return_to_ai` and `close_chat`."""
from __future__ import annotations

from ..appkeys import SUPPORT
from ..jsonutil import now_iso
from ..services.queue import queue_update
from .agent import agent_frames
from .frames import EscalateFrame, RatingFrame, SessionFrame
from .connection import Connection
from .visitor import visitor_frames


@visitor_frames.handler("escalate", EscalateFrame())
async def on_escalate(conn: Connection, frame: dict) -> None:
    """Ask for a person: the session joins the queue (the recalculator sends its `queue_update`)."""
    result = await conn.app[SUPPORT].escalate(conn.tenant_id, conn.session_id, frame.get("reason"))
    if not result["queued"] and result["position"] is not None:  # already waiting: say where, now
        conn.send(queue_update(conn.session_id, result["position"], result["estimatedWait"]))
    elif result["status"] == "active":  # an agent holds the chat already
        conn.send({"type": "queue_update", "sessionId": conn.session_id, "position": 0, "estimatedWait": 0,
                   "status": "active", "timestamp": now_iso()})


@visitor_frames.handler("rating", RatingFrame())
async def on_rating(conn: Connection, frame: dict) -> None:
    """Rate the closed chat once (a second try is a CONFLICT error frame)."""
    row = await conn.app[SUPPORT].rate(conn.tenant_id, conn.session_id, frame["rating"], frame.get("comment"))
    conn.send({"type": "rating_received", "sessionId": conn.session_id, "rating": row["rating"],
               "comment": row["comment"], "timestamp": now_iso()})


@agent_frames.handler("return_to_ai", SessionFrame())
async def on_return_to_ai(conn: Connection, frame: dict) -> None:
    """Hand the chat back to the assistant (the visitor and followers get `agent_left`)."""
    await conn.app[SUPPORT].return_to_ai(conn.tenant_id, frame["sessionId"], conn.staff)


@agent_frames.handler("close_chat", SessionFrame())
async def on_close_chat(conn: Connection, frame: dict) -> None:
    """End the chat (the visitor and followers get `chat_closed`)."""
    await conn.app[SUPPORT].close(conn.tenant_id, frame["sessionId"], conn.staff)
