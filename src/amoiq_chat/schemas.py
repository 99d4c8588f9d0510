"""Marshmallow schemas of the admin's REST bodies (accounts, keys, tenants, widgets, webhooks; unknown
fields refused), and the field types every schema uses (`Str` refuses control characters). The
visitor's bodies are `visitor_schemas.py`."""
from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validates_schema
from marshmallow.validate import Length, OneOf, Range, Regexp

from . import errors
from .credentials import PASSWORD_MAX, password_problem
from .http import validate
from .untrusted import control_problem
from .services.webhooks import EVENTS as WEBHOOK_EVENTS, MESSAGE_CREATED

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")
PRECHAT_TYPES = ("text", "email", "tel", "select")
KEY_KINDS = ("publishable", "secret")
ASSIGNMENTS = ("manual", "auto")
COLOR = Regexp(r"^#[0-9A-Fa-f]{6}$", error="must be a colour like #1a2b3c")
USERNAME = Regexp(r"^[A-Za-z0-9_.-]+$", error="may contain only letters, digits, '_', '.' and '-'")
# A host name, optionally "*." for any subdomain, optionally ":port" (widgets developed on local
# servers: localhost:3000); no scheme or path.
DOMAIN = Regexp(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$",
                error="must be a host name like example.com, *.example.com or localhost:3000")


def new_password(value: str) -> None:
    """Validate a new password (see password_problem)."""
    problem = password_problem(value)
    if problem:
        raise ValidationError(problem)


def not_blank(value: str) -> None:
    """Refuse strings of only whitespace."""
    if not value.strip():
        raise ValidationError("must not be blank")


def load_changes(schema: Schema | type[Schema], data: dict) -> dict:
    """Validate a partial update: only the given fields, at least one of them."""
    changes = validate(schema, data, partial=True)
    if not changes:
        raise errors.ValidationError("Nothing to update", errors={"body": "give at least one field to change"})
    return changes


class Str(fields.String):
    """The string field of every schema: NUL and control characters are a VALIDATION_ERROR naming the
    field (`multiline=True` keeps tab, LF and CR, for message text and other multi-line fields)."""

    def __init__(self, *, multiline: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.multiline = multiline

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = control_problem(text, self.multiline)
        if problem:
            raise ValidationError(problem)
        return text


class EmailStr(Str, fields.Email):
    """An e-mail address, with Str's refusal of control characters."""


class StrictBool(fields.Boolean):
    """A JSON boolean, not "true", 1 or "yes"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def text(low: int, high: int, **kwargs: Any) -> Str:
    """A string field of bounded length that is not blank."""
    return Str(validate=[Length(low, high), not_blank], **kwargs)


class Strict(Schema):
    """Refuses fields it does not know."""

    class Meta:
        unknown = RAISE


# Accounts ----------------------------------------------------------------------------------

class RegisterSchema(Strict):
    username = Str(required=True, validate=[Length(3, 100), USERNAME])
    email = EmailStr(required=True, validate=Length(max=255))
    password = Str(required=True, validate=new_password)


class LoginSchema(Strict):
    email = EmailStr(required=True, validate=Length(max=255))
    password = Str(required=True, validate=Length(1, PASSWORD_MAX))


class AgentSchema(Strict):
    """POST /api/agents; with partial=True, PUT /api/agents/{id}."""

    username = Str(required=True, validate=[Length(3, 100), USERNAME])
    email = EmailStr(required=True, validate=Length(max=255))
    password = Str(required=True, validate=new_password)
    full_name = text(1, 255, required=True)
    is_active = StrictBool()
    max_concurrent_chats = fields.Integer(strict=True, validate=Range(1, 100))  # auto assignment's limit


class ApiKeySchema(Strict):
    kind = Str(required=True, validate=OneOf(KEY_KINDS))
    name = Str(validate=Length(max=100), load_default="")


# How a session is resumed with the publishable key: its secret, or (for widgets that cannot keep
# one) its id alone (SPEC section 12).
SESSION_RESUME = ("secret", "session_id")


class TenantSchema(Strict):
    """PUT /api/tenant (partial); identitySecret is read-only, so unknown here."""

    name = text(1, 255)
    identity_verification = StrictBool(data_key="identityVerification")
    session_resume = Str(data_key="sessionResume", validate=OneOf(SESSION_RESUME))
    assignment = Str(validate=OneOf(ASSIGNMENTS))


# Widgets -----------------------------------------------------------------------------------

class PrechatFieldSchema(Strict):
    name = Str(required=True, validate=[Length(1, 50), Regexp(r"^[A-Za-z][A-Za-z0-9_]*$",
                                                                        error="must be an identifier like full_name")])
    label = text(1, 255)
    type = Str(required=True, validate=OneOf(PRECHAT_TYPES))
    required = StrictBool(load_default=False)
    options = fields.List(text(1, 255), validate=Length(1, 50))

    @validates_schema
    def options_only_for_select(self, data: dict, **kwargs: Any) -> None:
        """A select needs options; other types take none."""
        if data.get("type") == "select" and not data.get("options"):
            raise ValidationError("required for a select field", "options")
        if data.get("type") in ("text", "email", "tel") and "options" in data:
            raise ValidationError("only a select field has options", "options")

    @post_load
    def default_label(self, data: dict, **kwargs: Any) -> dict:
        """Label a field by its name when no label is given."""
        data.setdefault("label", data["name"])
        return data


class FaqEntrySchema(Strict):
    keywords = fields.List(text(1, 100), required=True, validate=Length(1, 20))
    answer = text(1, 2000, required=True, multiline=True)


class WidgetSchema(Strict):
    """POST /api/widgets; with partial=True, PUT /api/widgets/{siteKey}."""

    business_name = text(1, 255, required=True)
    widget_title = text(1, 255)
    welcome_message = text(1, 2000, multiline=True)
    primary_color = Str(validate=COLOR)
    secondary_color = Str(validate=COLOR)
    position = Str(validate=OneOf(POSITIONS))
    enable_prechat_form = StrictBool()
    prechat_fields = fields.List(fields.Nested(PrechatFieldSchema), validate=Length(max=20))
    allowed_domains = fields.List(Str(validate=Length(1, 253)), validate=Length(max=50))
    faq = fields.List(fields.Nested(FaqEntrySchema), validate=Length(max=100))
    is_active = StrictBool()

    @validates_schema
    def unique_prechat_names(self, data: dict, **kwargs: Any) -> None:
        """Two pre-chat fields may not share a name."""
        names = [f["name"] for f in data.get("prechat_fields") or []]
        if len(names) != len(set(names)):
            raise ValidationError("two fields share a name", "prechat_fields")

    @validates_schema
    def domains_are_host_names(self, data: dict, **kwargs: Any) -> None:
        """Each allowed domain is a bare host name (case does not matter)."""
        errors = {}
        for index, domain in enumerate(data.get("allowed_domains") or []):
            try:
                DOMAIN(domain.lower())
            except ValidationError as exc:
                errors[index] = exc.messages
        if errors:
            raise ValidationError({"allowed_domains": errors})

    @post_load
    def lower_domains(self, data: dict, **kwargs: Any) -> dict:
        """Store domains in lower case, once each, in the order given."""
        if "allowed_domains" in data:
            data["allowed_domains"] = list(dict.fromkeys(d.lower() for d in data["allowed_domains"]))
        return data


class PageSchema(Schema):
    """?page=&limit= of a list (other query parameters, such as cache busters, are ignored)."""

    class Meta:
        unknown = EXCLUDE

    page = fields.Integer(load_default=1, validate=Range(1, 1_000_000))
    limit = fields.Integer(load_default=50, validate=Range(1, 100))


# Webhooks ----------------------------------------------------------------------------------

class WebhookSchema(Strict):
    """POST /api/webhooks; with partial=True, PUT /api/webhooks/{id}."""

    url = Str(required=True, validate=Length(1, 2048))
    events = fields.List(Str(validate=OneOf(WEBHOOK_EVENTS)), validate=Length(1, len(WEBHOOK_EVENTS)),
                         load_default=lambda: [MESSAGE_CREATED])
    active = StrictBool(load_default=True)
    description = Str(validate=Length(max=500), load_default="")

    @post_load
    def events_once(self, data: dict, **kwargs: Any) -> dict:
        """Keep each event once, in the order given."""
        if "events" in data:
            data["events"] = list(dict.fromkeys(data["events"]))
        return data
