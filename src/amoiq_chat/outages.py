"""Which failures are outages of PostgreSQL or Redis (retryable: SERVICE_UNAVAILABLE), and which
say the server itself is broken (INTERNAL_ERROR). The one place that tells them apart."""
from __future__ import annotations

import asyncio
import logging

import psycopg2
import redis.exceptions

from .errors import ApiError, InternalError, ServiceUnavailable

# A connection refused, cut or timed out; PostgreSQL shutting down, terminating backends
# (57P01, a failover), out of connections or cancelling a statement that ran too long
# (OperationalError covers SQLSTATE classes 08, 53, 57 and 57014); a connection used after
# it closed (InterfaceError); this process stopping with the work in flight (CancelledError).
OUTAGES: tuple[type[BaseException], ...] = (
    psycopg2.OperationalError, psycopg2.InterfaceError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    ConnectionError, TimeoutError, asyncio.CancelledError,
)
# Seconds a client is told to wait before it tries again (REST: Retry-After).
RETRY_AFTER = 1


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says PostgreSQL or Redis is unreachable or a connection to one died."""
    return isinstance(exc, OUTAGES)


def failure(exc: BaseException, message: str | None = None) -> ApiError:
    """The error a caller gets for work that failed with `exc`: SERVICE_UNAVAILABLE (503, retryable
    with the same clientMessageId) for an outage, else INTERNAL_ERROR (500)."""
    details = {"reason": type(exc).__name__}
    if is_outage(exc):
        return ServiceUnavailable(message or "A backing service is unavailable; please retry",
                                  details={**details, "retryable": True}, headers={"Retry-After": str(RETRY_AFTER)})
    return InternalError(message, details=details)


def unexpected(exc: Exception, log: logging.Logger, what: str) -> ApiError:
    """The error for an exception no handler expected, logged: a warning for an outage (it is not
    the server's fault), the traceback otherwise."""
    error = failure(exc)
    if is_outage(exc):
        log.warning("%s: backing service unavailable: %r", what, exc)
    else:
        log.error("%s failed", what, exc_info=exc)
    return error
