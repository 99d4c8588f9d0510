"""Marshmallow schemas of the chat's REST bodies, query strings and WebSocket frames."""
from __future__ import annotations

import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

MAX_TEXT = 10000
Text255 = lambda **kw: fields.Str(validate=validate.Length(max=255), **kw)  # noqa: E731
SessionIdField = lambda **kw: fields.Str(validate=[validate.Length(min=8, max=128),  # noqa: E731
                                                   validate.Regexp(r"^[A-Za-z0-9._~-]+$", error="must be url-safe")], **kw)
ClientMessageId = lambda: fields.Str(validate=validate.Length(min=1, max=128), load_default=None)  # noqa: E731


class Lenient(Schema):
    """Ignores fields it does not know (frames carry timestamps and ids the server does not need)."""

    class Meta:
        unknown = EXCLUDE


class UserInfo(Lenient):
    name = Text255(allow_none=True)
    email = Text255(allow_none=True)
    phone = fields.Str(validate=validate.Length(max=64), allow_none=True)


class VisitorFields(Lenient):
    """What the 001 widget sends about the visitor with each message."""

    tenantId = Text255()
    sessionId = SessionIdField()
    fingerprint = Text255(allow_none=True)
    userId = Text255(allow_none=True)
    userHash = fields.Str(validate=validate.Length(max=128), allow_none=True)
    userInfo = fields.Nested(UserInfo, allow_none=True)
    domain = Text255(allow_none=True)
    origin = fields.Str(validate=validate.Length(max=2048), allow_none=True)
    url = fields.Str(validate=validate.Length(max=2048), allow_none=True)
    referrer = fields.Str(validate=validate.Length(max=2048), allow_none=True)
    siteId = Text255(allow_none=True)
    siteKey = Text255(allow_none=True)


class HasText(Lenient):
    """A message's `text` (or `message`, as the 004 widget says) and optional clientMessageId."""

    text = fields.Str(validate=validate.Length(max=MAX_TEXT))
    message = fields.Str(validate=validate.Length(max=MAX_TEXT))
    clientMessageId = ClientMessageId()

    @validates_schema
    def has_text(self, data, **kwargs):
        """One of text/message must hold something."""
        if not (data.get("text") or data.get("message") or "").strip():
            raise ValidationError("text (or message) is required", field_name="text")


class MessageBody(VisitorFields, HasText):
    """POST /webchat/message and the visitor's `message` frame."""


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
            if type(value) is not str or len(value) > MAX_TEXT:
                return None
            out[name] = value
    if not (out.get("text") or out.get("message") or "").strip():  # as HasText.has_text
        return None
    cmid = frame.get("clientMessageId")
    if cmid is not None:
        if type(cmid) is not str or not 1 <= len(cmid) <= 128:
            return None
        out["clientMessageId"] = cmid
    if "sessionId" in frame:
        sid = frame["sessionId"]
        if type(sid) is not str or not _SESSION_ID.fullmatch(sid):
            return None
        out["sessionId"] = sid
    return out


class AnonymousTokenBody(Lenient):
    tenantId = Text255()
    sessionId = SessionIdField(allow_none=True)
    userId = Text255(allow_none=True)
    userHash = fields.Str(validate=validate.Length(max=128), allow_none=True)
    fingerprint = Text255(allow_none=True)
    siteKey = Text255(allow_none=True)


class SessionBody(AnonymousTokenBody):
    siteKey = Text255(required=True)
    userInfo = fields.Nested(UserInfo, allow_none=True)


class HistoryQuery(Lenient):
    tenantId = Text255()
    sessionId = SessionIdField()
    userId = Text255()
    before = fields.UUID()
    limit = fields.Int(validate=validate.Range(min=1, max=200), load_default=50)


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
