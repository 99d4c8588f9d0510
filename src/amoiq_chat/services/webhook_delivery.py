"""One delivery attempt, from a held delivery row to its recorded outcome (and its dead letter)."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import aiopg
import redis.asyncio as aioredis

from ..bus.rooms import WEBHOOK_DEAD_STREAM
from ..errors import NotFound
from ..jsonutil import dumps, iso, now_iso
from ..settings import Settings
from ..store import webhooks as store
from . import messages
from .webhook_http import Outcome, Poster, next_delay, signed_headers

log = logging.getLogger(__name__)
DEAD_LETTERS_MAX = 100_000  # the dead-letter stream keeps about this many entries


def body_of(job: dict) -> bytes:
    """The JSON body of a job: a message.created body made from its message row, else its stored payload."""
    if job["message_id"] is None:
        return dumps(job["payload"])
    row = {"id": job["message_id"], "session_id": job["session_id"], "user_id": job["user_id"],
           "tenant_id": job["tenant_id"], "message": job["message"], "sender_type": job["sender_type"],
           "created_at": job["created_at"]}
    return dumps(messages.webhook_payload(row))


def msg_id(job: dict) -> str:
    """The `webhook-id` of a job: the same for every attempt and every endpoint of it."""
    return f"msg_{job['outbox_id']}"


class Recorder:
    """Writes attempts' outcomes in batches: the outcomes that come while one batch is written go
    together in the next (one statement and one commit for many, as the message writer does)."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self.pool = pool
        self._waiting: list[tuple[dict, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def record(self, outcome: dict) -> None:
        """Record one outcome; return once it is committed (raise if it could not be)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((outcome, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="webhook-recorder")
        await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the outcomes of this loop tick join
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                async with self.pool.acquire() as conn:
                    await store.record_attempts(conn, [{**outcome, "o": n} for n, (outcome, _) in enumerate(batch)])
            except Exception as exc:  # each waiting attempt fails; its hold runs out and it is attempted again
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


class Deliverer:
    """Attempts held deliveries: sign, post, decide (retry, delivered, dead, endpoint off), record."""

    def __init__(self, pool: aiopg.Pool, redis: aioredis.Redis, settings: Settings) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        self.lease = settings.webhook_claim_idle  # a held delivery is free again after this long
        self.poster = Poster(settings.webhook_timeout, settings.webhook_allow_private, settings.webhook_concurrency)
        self.recorder = Recorder(pool)
        self.next_due = float("inf")  # time.monotonic() when the soonest retry this process scheduled is due

    def target(self, job: dict) -> tuple[str, list[str]]:
        """The URL and the signing secrets of a job's endpoint (the global one when it has no id)."""
        if job["webhook_id"] is None:
            return self.settings.webhook_url, [self.settings.webhook_secret]
        signing = [job["secret"]]
        if job["overlapping"] and job["previous_secret"]:
            signing.append(job["previous_secret"])
        return job["url"], signing

    async def attempt(self, job: dict, *, final: bool = False) -> tuple[str, Outcome]:
        """Attempt a held delivery once and record the outcome; (its new status, the outcome).
        `final`: no retry after a failure (a test ping)."""
        off = job["webhook_id"] is not None and not job["active"]
        if off:
            outcome = Outcome(None, "the endpoint is turned off", 0)
        else:
            url, signing = self.target(job)
            body = body_of(job)
            outcome = await self.poster.post(url, signed_headers(signing, msg_id(job), body), body)
        attempts = job["attempts"] + 1
        disable = self._disable_reason(job, outcome)
        if outcome.ok:
            status, delay = "delivered", 0.0
        elif off or final or outcome.status == 410 or disable or attempts >= self.settings.webhook_attempts:
            status, delay = "dead", 0.0
        else:
            status, delay = "pending", next_delay(self.settings.webhook_retry_schedule, attempts, outcome)
            self.next_due = min(self.next_due, time.monotonic() + delay)
        await self.recorder.record({"id": job["id"], "webhook_id": job["webhook_id"], "status": status,
                                    "code": outcome.status, "error": outcome.error, "ms": outcome.duration_ms,
                                    "delay": delay, "ok": outcome.ok, "disable": disable})
        if status == "dead" and job["event"] != "ping":
            await self._dead_letter(job, attempts, outcome)
        return status, outcome

    def _disable_reason(self, job: dict, outcome: Outcome) -> str | None:
        """Why the endpoint goes off after this outcome: a 410, or failing for WEBHOOK_DISABLE_AFTER."""
        if job["webhook_id"] is None or outcome.ok or not job["active"]:
            return None
        if outcome.status == 410:
            return f"The receiver answered 410 Gone ({now_iso()})"
        since = job["failing_since"]
        if since is not None and dt.datetime.now(dt.timezone.utc) - since > dt.timedelta(
                seconds=self.settings.webhook_disable_after):
            return f"Every attempt failed from {iso(since)} to {now_iso()}; the last: {outcome.error}"
        return None

    async def _dead_letter(self, job: dict, attempts: int, outcome: Outcome) -> None:
        entry: dict[str, Any] = {"delivery_id": job["id"], "outbox_id": job["outbox_id"],
                                 "webhook_id": job["webhook_id"] or "", "tenant_id": job["tenant_id"],
                                 "event": job["event"], "attempts": attempts, "error": outcome.error or ""}
        try:
            await self.redis.xadd(WEBHOOK_DEAD_STREAM, entry, maxlen=DEAD_LETTERS_MAX, approximate=True)
        except Exception as exc:  # the delivery row says dead with its error all the same
            log.warning("webhook delivery %s is dead; adding it to %s failed: %s", job["id"], WEBHOOK_DEAD_STREAM, exc)

    async def ping(self, tenant_id: str, webhook_id: int) -> tuple[dict, Outcome]:
        """Send a signed `ping` to one endpoint now, recorded as a delivery; (the delivery, the outcome)."""
        payload = {"event": "ping", "timestamp": now_iso(), "data": {"webhookId": webhook_id, "tenantId": tenant_id}}
        async with self.pool.acquire() as conn:
            job = await store.add_ping(conn, tenant_id, webhook_id, payload, self.lease)
        if job is None:
            raise NotFound(f"Webhook not found: {webhook_id}")
        job["active"] = True  # a ping tries a turned-off endpoint too
        _, outcome = await self.attempt(job, final=True)
        return job, outcome

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.poster.close()
