"""Marshmallow schemas of the visitor's bodies (unknown fields ignored: widgets send more than the server
needs): messages, sessions, tokens, history queries, escalations and ratings. The visitor's socket
frames share them (`ws/frames.py`); the field types are `schemas.py`'s."""
from __future__ import annotations

from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates_schema
from marshmallow.validate import Length, Range, Regexp

from .schemas import StrictBool, Str

# Chat: the visitor's bodies ---------------------------------------------------------------

MAX_TEXT = 10000
Text255 = lambda **kw: Str(validate=Length(max=255), **kw)  # noqa: E731
SessionIdField = lambda **kw: Str(validate=[Length(min=8, max=128),  # noqa: E731
                                                   Regexp(r"^[A-Za-z0-9._~-]+$", error="must be url-safe")], **kw)
ClientMessageId = lambda: Str(validate=Length(min=1, max=128), load_default=None)  # noqa: E731
# Resuming an existing session with the publishable key takes its secret (SPEC section 12).
SessionSecret = lambda: Str(validate=Length(max=128), allow_none=True)  # noqa: E731


class Lenient(Schema):
    """Ignores fields it does not know (frames carry timestamps and ids the server does not need)."""

    class Meta:
        unknown = EXCLUDE


class UserInfo(Lenient):
    name = Text255(allow_none=True)
    email = Text255(allow_none=True)
    phone = Str(validate=Length(max=64), allow_none=True)


class VisitorFields(Lenient):
    """What the 001 widget sends about the visitor with each message."""

    tenantId = Text255()
    sessionId = SessionIdField()
    fingerprint = Text255(allow_none=True)
    userId = Text255(allow_none=True)
    userHash = Str(validate=Length(max=128), allow_none=True)
    userInfo = fields.Nested(UserInfo, allow_none=True)
    domain = Text255(allow_none=True)
    origin = Str(validate=Length(max=2048), allow_none=True)
    url = Str(validate=Length(max=2048), allow_none=True)
    referrer = Str(validate=Length(max=2048), allow_none=True)
    siteId = Text255(allow_none=True)
    siteKey = Text255(allow_none=True)
    sessionSecret = SessionSecret()


def message_text(data: Mapping[str, Any]) -> str:
    """A message's text: `text`, else `message` (the 004 widget's name for it), stripped ("" when neither)."""
    return (data.get("text") or data.get("message") or "").strip()


class HasText(Lenient):
    """A message's `text` (or `message`, as the 004 widget says) and optional clientMessageId."""

    text = Str(validate=Length(max=MAX_TEXT), multiline=True)
    message = Str(validate=Length(max=MAX_TEXT), multiline=True)
    clientMessageId = ClientMessageId()

    @validates_schema
    def has_text(self, data, **kwargs):
        """One of text/message must hold something."""
        if not message_text(data):
            raise ValidationError("text (or message) is required", field_name="text")


class MessageBody(VisitorFields, HasText):
    """POST /webchat/message and the visitor's `message` frame."""


class AnonymousTokenBody(Lenient):
    tenantId = Text255()
    sessionId = SessionIdField(allow_none=True)
    userId = Text255(allow_none=True)
    userHash = Str(validate=Length(max=128), allow_none=True)
    fingerprint = Text255(allow_none=True)
    siteKey = Text255(allow_none=True)
    sessionSecret = SessionSecret()


class SessionBody(AnonymousTokenBody):
    siteKey = Text255(required=True)
    userInfo = fields.Nested(UserInfo, allow_none=True)


class TenantQuery(Lenient):
    """?tenantId= (online-users)."""

    tenantId = Text255()


class HistoryQuery(Lenient):
    tenantId = Text255()
    sessionId = SessionIdField()
    userId = Text255()
    before = fields.UUID()
    limit = fields.Int(validate=Range(min=1, max=200), load_default=50)


# Support workflow ---------------------------------------------------------------------------

class RatingFields(Lenient):
    """A visitor's rating of a closed chat: 1-5 and an optional comment."""

    rating = fields.Integer(strict=True, required=True, validate=Range(1, 5))
    comment = Str(validate=Length(max=2000), multiline=True, allow_none=True, load_default=None)


class RatingBody(RatingFields):
    """POST /api/chat/rating (with the publishable key, the session's secret: SPEC section 12)."""

    tenantId = Text255()
    sessionId = SessionIdField(required=True)
    sessionSecret = SessionSecret()


class EscalateBody(Lenient):
    """The optional body of POST /api/widgets/escalate/{siteKey}/{sessionId} and the `escalate` frame."""

    reason = Str(validate=Length(max=255), allow_none=True, load_default=None)
    customer_frustrated = StrictBool(allow_none=True)
    sessionId = SessionIdField()
