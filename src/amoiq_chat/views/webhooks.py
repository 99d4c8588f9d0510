"""The tenant's webhook endpoints (SPEC section 12): CRUD, secret rotation, deliveries, retry, test ping."""
from __future__ import annotations

from aiohttp import web

from ..responses import Done
from ..responses import webhooks as out
from ..apidoc import describe
from ..appkeys import DB, SETTINGS, WEBHOOK_WORKER
from ..auth import authenticate
from ..credentials import ADMIN, SECRET_KEY
from ..errors import NotFound
from ..http import json_response, path_id, read_json, validate
from ..jsonutil import iso
from ..schemas import WebhookSchema, load_changes
from ..services import webhooks
from ..services.webhook_delivery import msg_id

routes = web.RouteTableDef()
ALLOWED = (ADMIN, SECRET_KEY)
DELIVERIES_LIMIT = 50


def webhook_json(row: dict, secret: str | None = None) -> dict:
    """An endpoint as shown; `secret` only when just made or rotated."""
    shown = {
        "id": row["id"], "url": row["url"], "events": row["events"], "active": row["active"],
        "description": row["description"], "createdAt": iso(row["created_at"]), "updatedAt": iso(row["updated_at"]),
        "previousSecretExpiresAt": iso(row["previous_secret_until"]), "failingSince": iso(row["failing_since"]),
        "disabledAt": iso(row["disabled_at"]), "disabledReason": row["disabled_reason"],
    }
    if secret is not None:
        shown["secret"] = secret
    return shown


def delivery_json(row: dict) -> dict:
    """A delivery (one job to one endpoint) with its last attempt."""
    return {
        "id": row["id"], "event": row["event"], "webhookId": msg_id(row), "status": row["status"],
        "attempts": row["attempts"], "statusCode": row["last_status"], "durationMs": row["last_duration_ms"],
        "error": row["last_error"], "lastAttemptAt": iso(row["last_attempt_at"]),
        "nextAttemptAt": iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "createdAt": iso(row["created_at"]), "finishedAt": iso(row["finished_at"]),
    }


def webhook_id(request: web.Request) -> int:
    """The {id} of the path (404 when it cannot be one)."""
    found = path_id(request, "webhook_id")
    if found is None:
        raise NotFound(f"Webhook not found: {request.match_info['webhook_id']}")
    return found


@routes.get("/api/webhooks", name="webhooks")
@describe("webhooks", auth=ALLOWED, answers={200: out.WebhooksAnswer})
async def list_webhooks(request: web.Request) -> web.Response:
    """The tenant's endpoints (secrets never shown again)."""
    principal = await authenticate(request, allow=ALLOWED)
    rows = await webhooks.list_endpoints(request.app[DB], principal.tenant_id)
    return json_response({"success": True, "data": {"webhooks": [webhook_json(r) for r in rows]}})


@routes.post("/api/webhooks", name="webhooks")
@describe("webhooks", auth=ALLOWED, body=WebhookSchema, answers={201: out.WebhookSecretAnswer})
async def create_webhook(request: web.Request) -> web.Response:
    """Create an endpoint; its secret is in this answer and nowhere else."""
    principal = await authenticate(request, allow=ALLOWED)
    body = validate(WebhookSchema, await read_json(request))
    row, secret = await webhooks.create_endpoint(request.app[DB], principal.tenant_id, body,
                                                 request.app[SETTINGS].webhook_allow_private)
    return json_response({"success": True, "message": "Webhook created", "data": {"webhook": webhook_json(row, secret)}},
                         status=201)


@routes.get("/api/webhooks/{webhook_id}", name="webhook")
@describe("webhooks", auth=ALLOWED, path={"webhook_id": "integer"}, answers={200: out.WebhookAnswer})
async def get_webhook(request: web.Request) -> web.Response:
    """One endpoint, with why it was turned off if it was."""
    principal = await authenticate(request, allow=ALLOWED)
    row = await webhooks.get_endpoint(request.app[DB], principal.tenant_id, webhook_id(request))
    return json_response({"success": True, "data": {"webhook": webhook_json(row)}})


@routes.put("/api/webhooks/{webhook_id}", name="webhook")
@describe("webhooks", auth=ALLOWED, body=WebhookSchema, partial=True, path={"webhook_id": "integer"},
          answers={200: out.WebhookChanged})
async def update_webhook(request: web.Request) -> web.Response:
    """Change url, events, active or description (active: true turns a disabled endpoint on again)."""
    principal = await authenticate(request, allow=ALLOWED)
    target = webhook_id(request)
    changes = load_changes(WebhookSchema, await read_json(request))
    row = await webhooks.update_endpoint(request.app[DB], principal.tenant_id, target, changes,
                                         request.app[SETTINGS].webhook_allow_private)
    return json_response({"success": True, "message": "Webhook updated", "data": {"webhook": webhook_json(row)}})


@routes.delete("/api/webhooks/{webhook_id}", name="webhook")
@describe("webhooks", auth=ALLOWED, path={"webhook_id": "integer"}, answers={200: Done})
async def delete_webhook(request: web.Request) -> web.Response:
    """Delete an endpoint and its deliveries."""
    principal = await authenticate(request, allow=ALLOWED)
    await webhooks.delete_endpoint(request.app[DB], principal.tenant_id, webhook_id(request))
    return json_response({"success": True, "message": "Webhook deleted"})


@routes.post("/api/webhooks/{webhook_id}/rotate-secret", name="webhook_rotate_secret")
@describe("webhooks", auth=ALLOWED, path={"webhook_id": "integer"}, answers={200: out.WebhookSecretAnswer})
async def rotate_secret(request: web.Request) -> web.Response:
    """A new secret (shown once); the old one keeps signing beside it for WEBHOOK_ROTATION_OVERLAP."""
    principal = await authenticate(request, allow=ALLOWED)
    row, secret = await webhooks.rotate_secret(request.app[DB], principal.tenant_id, webhook_id(request),
                                               request.app[SETTINGS].webhook_rotation_overlap)
    return json_response({"success": True, "message": "Secret rotated", "data": {"webhook": webhook_json(row, secret)}})


@routes.get("/api/webhooks/{webhook_id}/deliveries", name="webhook_deliveries")
@describe("webhooks", auth=ALLOWED, path={"webhook_id": "integer"}, answers={200: out.DeliveriesAnswer})
async def list_deliveries(request: web.Request) -> web.Response:
    """The endpoint's 50 most recent deliveries, newest first."""
    principal = await authenticate(request, allow=ALLOWED)
    rows = await webhooks.deliveries(request.app[DB], principal.tenant_id, webhook_id(request), DELIVERIES_LIMIT)
    return json_response({"success": True, "data": {"deliveries": [delivery_json(r) for r in rows]}})


@routes.post("/api/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", name="webhook_delivery_retry")
@describe("webhooks", auth=ALLOWED, path={"webhook_id": "integer", "delivery_id": "integer"},
          answers={202: out.DeliveryQueued})
async def retry_delivery(request: web.Request) -> web.Response:
    """Attempt a delivery again now (a dead one too), with a fresh schedule of retries."""
    principal = await authenticate(request, allow=ALLOWED)
    target = webhook_id(request)
    delivery = path_id(request, "delivery_id")
    if delivery is None:
        raise NotFound(f"Delivery not found: {request.match_info['delivery_id']}")
    row = await webhooks.retry_delivery(request.app[DB], principal.tenant_id, target, delivery)
    return json_response({"success": True, "message": "Delivery queued", "data": {"delivery": delivery_json(row)}},
                         status=202)


@routes.post("/api/webhooks/{webhook_id}/test", name="webhook_test")
@describe("webhooks", auth=ALLOWED, path={"webhook_id": "integer"}, answers={200: out.PingAnswer})
async def test_webhook(request: web.Request) -> web.Response:
    """Send a signed `ping` now and answer what the receiver said."""
    principal = await authenticate(request, allow=ALLOWED)
    job, outcome = await request.app[WEBHOOK_WORKER].deliverer.ping(principal.tenant_id, webhook_id(request))
    return json_response({"success": True, "data": {"delivery": {
        "id": job["id"], "webhookId": msg_id(job), "ok": outcome.ok, "statusCode": outcome.status,
        "durationMs": outcome.duration_ms, "error": outcome.error}}})
