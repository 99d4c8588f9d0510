"""Marshmallow schemas of the JSON answers, for the OpenAPI document only (handlers build plain dicts):
the helpers, the error envelope, health, accounts, keys and tenant here; widgets and chat in
`responses/widgets.py`.

They refuse unknown fields, so the document says `additionalProperties: false` and the fuzz test
(tests/test_fuzz.py) fails as soon as a handler answers a field that is not described here.
"""
from __future__ import annotations

from marshmallow import Schema, fields
from marshmallow.validate import OneOf

from ..schemas import ASSIGNMENTS, KEY_KINDS, SESSION_RESUME

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


def answer(name: str, data: dict[str, fields.Field] | None = None, *, message: bool = False) -> type[Schema]:
    """`{success, message?, data: {...}}`, the shape of most answers, as a schema class named `name`."""
    declared: dict[str, fields.Field] = {"success": always(Bool)}
    if message:
        declared["message"] = always()
    if data is not None:
        declared["data"] = nested(Schema.from_dict(data, name=name + "Data"))
    return Schema.from_dict(declared, name=name)


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


RegisterAnswer = answer("RegisterAnswer", {"user": nested(UserOut), "token": always(), "tenant": nested(TenantKeysOut)},
                        message=True)
LoginAnswer = answer("LoginAnswer", {"user": nested(UserOut), "token": always()}, message=True)
AgentLoginAnswer = answer("AgentLoginAnswer", {"agent": nested(AgentLoginOut), "token": always()}, message=True)
MeAnswer = answer("MeAnswer", {"user": nested(MeOut)})


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
    max_concurrent_chats = always(Int, metadata={"description": "auto assignment's limit"})


AgentAnswer = answer("AgentAnswer", {"agent": nested(AgentOut)}, message=True)
AgentsAnswer = answer("AgentsAnswer", {"agents": many(AgentOut)})


class AgentStatsOut(Schema):
    chatsHandled = always(Int)
    activeChats = always(Int)
    avgResponseTime = nullable(metadata={"examples": ["2.3 min"]})
    customerSatisfaction = nullable(fields.Float)


AgentStatsAnswer = Schema.from_dict({"success": always(Bool), "data": nested(AgentStatsOut)}, name="AgentStatsAnswer")


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


KeyAnswer = answer("KeyAnswer", {"key": nested(KeyOut)}, message=True)
KeysAnswer = answer("KeysAnswer", {"keys": many(KeyOut)})


class TenantOut(Schema):
    id = always()
    name = always()
    identityVerification = always(Bool)
    identitySecret = always()
    sessionResume = always(validate=OneOf(SESSION_RESUME))
    assignment = always(validate=OneOf(ASSIGNMENTS))
    createdAt = always()
    updatedAt = always()


TenantAnswer = answer("TenantAnswer", {"tenant": nested(TenantOut)})
TenantChanged = answer("TenantChanged", {"tenant": nested(TenantOut)}, message=True)
