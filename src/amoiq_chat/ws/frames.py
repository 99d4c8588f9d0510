"""Marshmallow schemas of the WebSocket frames (the visitor's `message` frame is the REST body, `MessageBody`)."""
from __future__ import annotations

import re

from marshmallow import fields, validate

from ..visitor_schemas import MAX_TEXT, EscalateBody, HasText, Lenient, RatingFields, SessionIdField, Text255, VisitorFields, message_text
from ..untrusted import control_problem

_SESSION_ID = re.compile(r"[A-Za-z0-9._~-]{8,128}")
_PLAIN_MESSAGE_KEYS = frozenset(("type", "text", "message", "clientMessageId", "sessionId"))


def plain_message(frame: dict) -> dict | None:
    """MessageBody's result for the common frame of a joined socket, without marshmallow; None otherwise.

    Only frames made of type, text/message, clientMessageId and sessionId, every value of the
    right type and size: anything else (other fields, a bad value) returns None and goes through
    MessageBody, which gives the same result or names the error. Marshmallow cost about a tenth
    of the server's time per message.
    """
    if not frame.keys() <= _PLAIN_MESSAGE_KEYS:
        return None
    out: dict = {"clientMessageId": None}
    for name in ("text", "message"):
        if name in frame:
            value = frame[name]
            if type(value) is not str or len(value) > MAX_TEXT or control_problem(value, multiline=True):
                return None
            out[name] = value
    if not message_text(out):  # as HasText.has_text
        return None
    cmid = frame.get("clientMessageId")
    if cmid is not None:
        if type(cmid) is not str or not 1 <= len(cmid) <= 128 or control_problem(cmid):
            return None
        out["clientMessageId"] = cmid
    if "sessionId" in frame:
        sid = frame["sessionId"]
        if type(sid) is not str or not _SESSION_ID.fullmatch(sid):
            return None
        out["sessionId"] = sid
    return out


class TypingFrame(Lenient):
    sessionId = SessionIdField()
    isTyping = fields.Bool(load_default=True)


class SyncFrame(Lenient):
    sessionId = SessionIdField()
    since = fields.Int(required=True, validate=validate.Range(min=0))


class JoinFrame(VisitorFields):
    """A tab that only listens: `{"type":"join","siteKey":...}` (siteKey needed unless the socket has a token)."""


class SessionFrame(Lenient):
    """Agent frames about one session (accept_chat)."""

    sessionId = SessionIdField(required=True)


class SendMessageFrame(SessionFrame, HasText):
    """The agent's `send_message`."""


class AgentTypingFrame(SessionFrame):
    isTyping = fields.Bool(load_default=True)


class NoFields(Lenient):
    """Frames whose fields are all optional (get_waiting_sessions, get_online_users)."""

    tenantId = Text255()


class EscalateFrame(EscalateBody):
    """The visitor's `escalate`: the same as POST /api/widgets/escalate/{siteKey}/{sessionId}."""


class RatingFrame(RatingFields):
    """The visitor's `rating` of their closed chat."""


class ErrorFrame(Lenient):
    """What a refused frame gets (ws/registry.error_frame makes it); documented, not loaded."""

    type = fields.Str(required=True, validate=validate.OneOf(("error",)))
    code = fields.Str(required=True)
    message = fields.Str(required=True)
    errors = fields.Dict(required=True)
    frameType = fields.Str()
    clientMessageId = fields.Str()
