"""Webhook endpoints of a tenant, and the events other parts of the app emit.

Events: `message.created` (written by the message writer for every stored message), and for the
support workflow `conversation.escalated`, `conversation.assigned`, `conversation.closed` and
`rating.created`, which it emits with `record_event` inside its transaction and `announce_events`
after the commit (see README, "Webhooks").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import aiopg
import redis.asyncio as aioredis

from .. import db
from ..bus.rooms import WEBHOOK_STREAM
from ..errors import NotFound, ValidationError
from ..jsonutil import now_iso
from ..store import webhooks as store
from .webhook_http import check_url, new_secret

log = logging.getLogger(__name__)
MESSAGE_CREATED = "message.created"
# Events an endpoint may ask for, and the `data` keys each workflow event must carry.
WORKFLOW_EVENTS: dict[str, tuple[str, ...]] = {
    "conversation.escalated": ("sessionId", "tenantId"),
    "conversation.assigned": ("sessionId", "tenantId", "agentId"),
    "conversation.closed": ("sessionId", "tenantId", "closedBy"),
    "rating.created": ("sessionId", "tenantId", "rating"),
}
EVENTS = (MESSAGE_CREATED, *WORKFLOW_EVENTS)
MAX_ENDPOINTS = 20  # per tenant


@dataclass(frozen=True)
class Job:
    """An outbox row to announce on the job stream once its transaction has committed."""

    outbox_id: int
    tenant_id: str


async def record_event(conn: aiopg.Connection, tenant_id: str, event: str, data: dict[str, Any]) -> Job:
    """Write the outbox row of a workflow event on the caller's connection (inside its transaction).

    The body every endpoint gets is `{"event", "timestamp", "data"}` with `data` as given; it must
    hold the keys WORKFLOW_EVENTS names for the event. Call `announce_events` after the commit.
    """
    missing = [key for key in WORKFLOW_EVENTS.get(event, ()) if key not in data]
    if event not in WORKFLOW_EVENTS or missing:
        raise ValueError(f"not a workflow event, or its data lacks {missing}: {event}")
    payload = {"event": event, "timestamp": now_iso(), "data": data}
    return Job(await store.insert_event(conn, tenant_id, event, payload), tenant_id)


async def announce_events(redis: aioredis.Redis, jobs: list[Job]) -> None:
    """XADD committed jobs to the job stream (one round trip). Not raising: a job Redis did not take
    is re-added by the reconciler of the webhook worker."""
    if not jobs:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                pipe.xadd(WEBHOOK_STREAM, {"outbox_id": job.outbox_id, "message_id": "", "tenant_id": job.tenant_id})
            await pipe.execute()
    except Exception as exc:  # the outbox rows stay; the reconciler re-adds them
        log.warning("announcing %d webhook jobs failed (the reconciler re-adds them): %s", len(jobs), exc)


def workflow_events(pool: aiopg.Pool, redis: aioredis.Redis) -> Callable[[str, str, dict[str, Any]], Awaitable[None]]:
    """A listener of the support workflow's events (`Support.events`): each becomes a job for the
    tenant's endpoints that want it (its outbox row committed, then announced)."""

    async def emit(event: str, tenant_id: str, data: dict[str, Any]) -> None:
        async with db.transaction(pool) as conn:
            job = await record_event(conn, tenant_id, event, data)
        await announce_events(redis, [job])

    return emit


# Endpoints ---------------------------------------------------------------------------------

async def _checked_url(url: str, allow_private: bool) -> None:
    problem = await check_url(url, allow_private)
    if problem:
        raise ValidationError(f"Validation error: url {problem}", errors={"url": problem})


async def create_endpoint(pool: aiopg.Pool, tenant_id: str, fields: dict[str, Any], allow_private: bool) -> tuple[dict, str]:
    """Create an endpoint; return (its row, its signing secret, shown this once)."""
    await _checked_url(fields["url"], allow_private)
    secret = new_secret()
    async with pool.acquire() as conn:
        if await store.count_endpoints(conn, tenant_id) >= MAX_ENDPOINTS:
            raise ValidationError(f"A tenant has at most {MAX_ENDPOINTS} webhook endpoints",
                                  errors={"url": f"at most {MAX_ENDPOINTS} endpoints"})
        return await store.insert_endpoint(conn, tenant_id, fields, secret), secret


async def list_endpoints(pool: aiopg.Pool, tenant_id: str) -> list[dict]:
    """The tenant's endpoints."""
    async with pool.acquire() as conn:
        return await store.list_endpoints(conn, tenant_id)


def _found(row: dict | None, webhook_id: int) -> dict:
    if row is None:
        raise NotFound(f"Webhook not found: {webhook_id}")
    return row


async def get_endpoint(pool: aiopg.Pool, tenant_id: str, webhook_id: int) -> dict:
    """One endpoint of the tenant (404 for another tenant's)."""
    async with pool.acquire() as conn:
        return _found(await store.endpoint(conn, tenant_id, webhook_id), webhook_id)


async def update_endpoint(pool: aiopg.Pool, tenant_id: str, webhook_id: int, changes: dict[str, Any],
                          allow_private: bool) -> dict:
    """Change an endpoint (a new URL is checked as at creation)."""
    if "url" in changes:
        await _checked_url(changes["url"], allow_private)
    async with pool.acquire() as conn:
        return _found(await store.update_endpoint(conn, tenant_id, webhook_id, changes), webhook_id)


async def delete_endpoint(pool: aiopg.Pool, tenant_id: str, webhook_id: int) -> None:
    """Delete an endpoint and its deliveries."""
    async with pool.acquire() as conn:
        if not await store.delete_endpoint(conn, tenant_id, webhook_id):
            raise NotFound(f"Webhook not found: {webhook_id}")


async def rotate_secret(pool: aiopg.Pool, tenant_id: str, webhook_id: int, overlap: int) -> tuple[dict, str]:
    """A new signing secret (shown this once); the old one signs beside it for `overlap` seconds."""
    secret = new_secret()
    async with pool.acquire() as conn:
        return _found(await store.rotate_secret(conn, tenant_id, webhook_id, secret, overlap), webhook_id), secret


async def deliveries(pool: aiopg.Pool, tenant_id: str, webhook_id: int, limit: int) -> list[dict]:
    """The endpoint's recent deliveries, newest first."""
    async with pool.acquire() as conn:
        _found(await store.endpoint(conn, tenant_id, webhook_id), webhook_id)
        return await store.list_deliveries(conn, tenant_id, webhook_id, limit)


async def retry_delivery(pool: aiopg.Pool, tenant_id: str, webhook_id: int, delivery_id: int) -> dict:
    """Make a delivery due again now, with a fresh schedule (the worker takes it within a second)."""
    async with pool.acquire() as conn:
        row = await store.retry_delivery(conn, tenant_id, webhook_id, delivery_id)
    if row is None:
        raise NotFound(f"Delivery not found, or being attempted right now: {delivery_id}")
    return row
