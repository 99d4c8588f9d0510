"""Marshmallow schemas of the answers of the webhook routes (views/webhooks.py)."""
from __future__ import annotations

from marshmallow import Schema, fields
from marshmallow.validate import OneOf

from ..schemas import WEBHOOK_EVENTS
from . import Bool, Int, always, answer, many, nested, nullable

DELIVERY_STATES = ("pending", "delivered", "dead")


class WebhookOut(Schema):
    id = always(Int)
    url = always()
    events = fields.List(fields.String(validate=OneOf(WEBHOOK_EVENTS)), required=True)
    active = always(Bool)
    description = always()
    createdAt = always()
    updatedAt = always()
    previousSecretExpiresAt = nullable(metadata={"description": "until then the old secret signs beside the new one"})
    failingSince = nullable()
    disabledAt = nullable()
    disabledReason = nullable()


class WebhookWithSecretOut(WebhookOut):
    """Just created or rotated: the signing secret, shown this once."""

    secret = always(metadata={"examples": ["whsec_..."]})


class DeliveryOut(Schema):
    id = always(Int)
    event = always()
    webhookId = always(metadata={"description": "the `webhook-id` header of every attempt (msg_<n>)"})
    status = always(validate=OneOf(DELIVERY_STATES))
    attempts = always(Int)
    statusCode = nullable(Int, metadata={"description": "the receiver's last HTTP status"})
    durationMs = nullable(Int)
    error = nullable()
    lastAttemptAt = nullable()
    nextAttemptAt = nullable(metadata={"description": "null unless pending"})
    createdAt = always()
    finishedAt = nullable()


class PingOut(Schema):
    id = always(Int)
    webhookId = always()
    ok = always(Bool)
    statusCode = nullable(Int)
    durationMs = nullable(Int)
    error = nullable()


WebhooksAnswer = answer("WebhooksAnswer", {"webhooks": many(WebhookOut)})
WebhookAnswer = answer("WebhookAnswer", {"webhook": nested(WebhookOut)})
WebhookChanged = answer("WebhookChanged", {"webhook": nested(WebhookOut)}, message=True)
WebhookSecretAnswer = answer("WebhookSecretAnswer", {"webhook": nested(WebhookWithSecretOut)}, message=True)
DeliveriesAnswer = answer("DeliveriesAnswer", {"deliveries": many(DeliveryOut)})
DeliveryQueued = answer("DeliveryQueued", {"delivery": nested(DeliveryOut)}, message=True)
PingAnswer = answer("PingAnswer", {"delivery": nested(PingOut)})
