"""Failed logins counted per account in Redis (shared by every process), and the lockout they cause."""
from __future__ import annotations

import redis.asyncio as aioredis

from ..errors import RateLimited

# After MAX_FAILURES within FAILURE_WINDOW seconds the account is locked for LOCKOUT_BASE
# seconds, doubled by each further failure after a lockout ends, up to LOCKOUT_MAX.
# Unknown e-mails are counted too, so a lockout says nothing about whether an account exists.
# A successful login clears the count.
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
LOCKOUT_BASE = 60
LOCKOUT_MAX = 60 * 60


def _keys(role: str, email: str) -> tuple[str, str]:
    account = f"{role}:{email.strip().lower()}"
    return f"login:failures:{account}", f"login:lock:{account}"


async def check_lockout(redis: aioredis.Redis, role: str, email: str) -> None:
    """Raise 429 with Retry-After while the account is locked."""
    _, lock = _keys(role, email)
    remaining = await redis.ttl(lock)
    if remaining and remaining > 0:
        raise RateLimited(f"Too many failed logins; try again in {remaining} seconds",
                          headers={"Retry-After": str(remaining)})


async def record_failure(redis: aioredis.Redis, role: str, email: str) -> int:
    """Count a failed login; lock the account once the count reaches MAX_FAILURES. Return the count."""
    failures, lock = _keys(role, email)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(failures, 0, ex=FAILURE_WINDOW, nx=True)
        pipe.incr(failures)
        _, count = await pipe.execute()
    if count >= MAX_FAILURES:
        seconds = min(LOCKOUT_BASE * 2 ** (count - MAX_FAILURES), LOCKOUT_MAX)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(lock, count, ex=seconds)
            # Keep counting through the lockout, so the next failure locks for longer.
            pipe.expire(failures, seconds + FAILURE_WINDOW)
            await pipe.execute()
    return count


async def clear_failures(redis: aioredis.Redis, role: str, email: str) -> None:
    """Forget an account's failed logins (after a successful one)."""
    await redis.delete(*_keys(role, email))
