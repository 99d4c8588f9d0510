"""Marshmallow schemas of the JSON answers, for the OpenAPI document only (handlers build plain dicts).

They refuse unknown fields, so the document says `additionalProperties: false` and the fuzz test
(tests/test_fuzz.py) fails as soon as a handler answers a field that is not described here.
"""
from __future__ import annotations

from marshmallow import Schema, fields
from marshmallow.validate import OneOf

from .schemas import KEY_KINDS, POSITIONS, PRECHAT_TYPES

Str = fields.String
Int = fields.Integer
Bool = fields.Boolean


def nullable(field_class: type[fields.Field] = fields.String, **kwargs) -> fields.Field:
    """A field that is always there and may be null."""
    return field_class(required=True, allow_none=True, **kwargs)


def always(field_class: type[fields.Field] = fields.String, **kwargs) -> fields.Field:
    """A field that is always there."""
    return field_class(required=True, **kwargs)


def nested(schema: type[Schema], **kwargs) -> fields.Nested:
    """A nested object that is always there."""
    return fields.Nested(schema, required=True, **kwargs)


def many(schema: type[Schema]) -> fields.List:
    """A list of objects that is always there."""
    return fields.List(fields.Nested(schema), required=True)


class ErrorEnvelope(Schema):
    """SPEC section 3: every error, whatever its status."""

    success = always(Bool, metadata={"enum": [False]})
    message = always()
    error = always()
    code = always(metadata={"examples": ["VALIDATION_ERROR", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND"]})
    errors = always(fields.Dict, metadata={"description": "field -> problem (nested fields as a.0.b)"})
    details = always(fields.Dict)


class Done(Schema):
    """A success with a message and nothing else (deletions)."""

    success = always(Bool)
    message = always()


# Health ------------------------------------------------------------------------------------

class ServiceState(Schema):
    status = always(validate=OneOf(("up", "down")))
    latencyMs = fields.Float()
    error = Str()
    running = fields.List(Str())  # workers: the background workers that run


class ServiceStates(Schema):
    postgres = nested(ServiceState)
    redis = nested(ServiceState)


class Unavailable(Schema):
    """With 503, the envelope's fields too."""

    code = Str()
    message = Str()
    error = Str()
    errors = fields.Dict()
    details = fields.Dict()


class Health(Unavailable):
    success = always(Bool)
    message = always()
    timestamp = always()
    environment = always()
    domain = always()
    apiUrl = always()
    wsUrl = always()
    uptimeSeconds = always(fields.Float)
    services = nested(ServiceStates)


class Liveness(Schema):
    success = always(Bool)
    status = always(validate=OneOf(("up",)))
    uptimeSeconds = always(fields.Float)


class ReadinessChecks(ServiceStates):
    workers = nested(ServiceState)


class Readiness(Unavailable):
    success = always(Bool)
    status = always(validate=OneOf(("ready", "not ready")))
    checks = nested(ReadinessChecks)


# Accounts ----------------------------------------------------------------------------------

class UserOut(Schema):
    id = always(Int)
    username = always()
    email = always()
    tenantId = always()


class AgentLoginOut(UserOut):
    full_name = always()


class MeOut(UserOut):
    role = always(validate=OneOf(("admin", "agent")))
    full_name = Str()


class TenantKeysOut(Schema):
    id = always()
    publishableKey = always()
    secretKey = always()


class RegisterData(Schema):
    user = nested(UserOut)
    token = always()
    tenant = nested(TenantKeysOut)


class LoginData(Schema):
    user = nested(UserOut)
    token = always()


class AgentLoginData(Schema):
    agent = nested(AgentLoginOut)
    token = always()


class MeData(Schema):
    user = nested(MeOut)


class RegisterAnswer(Done):
    data = nested(RegisterData)


class LoginAnswer(Done):
    data = nested(LoginData)


class AgentLoginAnswer(Done):
    data = nested(AgentLoginData)


class MeAnswer(Schema):
    success = always(Bool)
    data = nested(MeData)


class AgentOut(Schema):
    id = always(Int)
    username = always()
    email = always()
    full_name = always()
    is_active = always(Bool)
    is_online = always(Bool)
    last_active = nullable()
    created_at = always()
    updated_at = always()


class AgentData(Schema):
    agent = nested(AgentOut)


class AgentsData(Schema):
    agents = many(AgentOut)


class AgentAnswer(Done):
    data = nested(AgentData)


class AgentsAnswer(Schema):
    success = always(Bool)
    data = nested(AgentsData)


class AgentStatsOut(Schema):
    chatsHandled = always(Int)
    activeChats = always(Int)
    avgResponseTime = nullable(metadata={"examples": ["2.3 min"]})
    customerSatisfaction = nullable(fields.Float)


class AgentStatsAnswer(Schema):
    success = always(Bool)
    data = nested(AgentStatsOut)


# Keys and tenant ---------------------------------------------------------------------------

class KeyOut(Schema):
    id = always(Int)
    kind = always(validate=OneOf(KEY_KINDS))
    name = always()
    prefix = always()
    key = nullable(metadata={"description": "the whole key; null for a listed secret key"})
    created_at = always()
    last_used_at = nullable()
    revoked_at = nullable()


class KeyData(Schema):
    key = nested(KeyOut)


class KeysData(Schema):
    keys = many(KeyOut)


class KeyAnswer(Done):
    data = nested(KeyData)


class KeysAnswer(Schema):
    success = always(Bool)
    data = nested(KeysData)


class TenantOut(Schema):
    id = always()
    name = always()
    identityVerification = always(Bool)
    identitySecret = always()
    createdAt = always()
    updatedAt = always()


class TenantData(Schema):
    tenant = nested(TenantOut)


class TenantAnswer(Schema):
    success = always(Bool)
    data = nested(TenantData)


class TenantChanged(Done):
    data = nested(TenantData)


# Widgets -----------------------------------------------------------------------------------

class PrechatFieldOut(Schema):
    name = always()
    label = always()
    type = always(validate=OneOf(PRECHAT_TYPES))
    required = always(Bool)
    options = fields.List(Str())


class FaqEntryOut(Schema):
    keywords = fields.List(Str(), required=True)
    answer = always()


class WidgetOut(Schema):
    id = always(Int)
    site_key = always()
    business_name = always()
    widget_title = always()
    welcome_message = always()
    primary_color = always()
    secondary_color = always()
    position = always(validate=OneOf(POSITIONS))
    enable_prechat_form = always(Bool)
    prechat_fields = many(PrechatFieldOut)
    allowed_domains = fields.List(Str(), required=True)
    faq = many(FaqEntryOut)
    created_at = always()
    updated_at = always()
    is_active = always(Bool)


class WidgetStatsOut(Schema):
    total_widgets = always(Int)
    active_widgets = always(Int)
    inactive_widgets = always(Int)
    total_chats = always(Int)
    total_messages = always(Int)
    average_response_time = nullable()
    customer_satisfaction = nullable(fields.Float)


class Pagination(Schema):
    page = always(Int)
    limit = always(Int)
    total = always(Int)


class WidgetData(Schema):
    widget = nested(WidgetOut)


class WidgetsData(Schema):
    widgets = many(WidgetOut)
    stats = nested(WidgetStatsOut)
    pagination = nested(Pagination)


class WidgetStatsData(Schema):
    stats = nested(WidgetStatsOut)


class WidgetAnswer(Schema):
    success = always(Bool)
    data = nested(WidgetData)


class WidgetChanged(Done):
    data = nested(WidgetData)


class WidgetsAnswer(Schema):
    success = always(Bool)
    data = nested(WidgetsData)


class WidgetStatsAnswer(Schema):
    success = always(Bool)
    data = nested(WidgetStatsData)


class WidgetConfigOut(Schema):
    businessName = always()
    widgetTitle = always()
    welcomeMessage = always()
    primaryColor = always()
    secondaryColor = always()
    position = always(validate=OneOf(POSITIONS))
    enablePrechatForm = always(Bool)
    prechatFields = many(PrechatFieldOut)
    siteKey = always()
    tenantId = always()


# Chat --------------------------------------------------------------------------------------

class VisitorTokenAnswer(Schema):
    token = always()
    expiresIn = always(Int)
    sessionId = always()


class SessionAnswer(Schema):
    success = always(Bool)
    sessionId = always()
    tenantId = always()
    siteKey = nullable()
    status = always()
    aiMode = always(Bool)


class MessageStoredAnswer(Schema):
    success = always(Bool)
    messageId = always()
    sessionId = always()
    seq = always(Int)
    clientMessageId = nullable()
    duplicate = always(Bool)


class Message001(Schema):
    id = always()
    text = always()
    sender = always(validate=OneOf(("user", "agent", "bot", "system")))
    timestamp = always()
    sessionId = always()
    userId = nullable()
    tenantId = always()
    seq = always(Int)


class HistoryAnswer(Schema):
    messages = many(Message001)
    hasMore = always(Bool)
    nextBefore = nullable()


class OnlineUser(Schema):
    userId = nullable()
    sessionId = Str()
    connectedAt = Str()
    domain = Str(allow_none=True)
    origin = Str(allow_none=True)
    url = Str(allow_none=True)


class OnlineUsersAnswer(Schema):
    users = many(OnlineUser)


class Message004(Schema):
    id = always()
    text = always()
    sender = always(validate=OneOf(("customer", "agent")))
    timestamp = always()
    isAI = always(Bool)
    seq = always(Int)


class CustomerInfo(Schema):
    name = nullable()
    email = nullable()
    business = nullable()
    waitingTime = nullable()
    userId = nullable()
    status = always()


class SessionHistoryAnswer(Schema):
    success = always(Bool)
    sessionId = always()
    messages = many(Message004)
    customerInfo = nested(CustomerInfo)
