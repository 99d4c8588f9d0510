"""Failed logins counted in Redis (shared by every process) per account and address, the lockout they
cause, and the slow-down of an account that many addresses fail at."""
from __future__ import annotations

import redis.asyncio as aioredis

from ..errors import RateLimited

# After MAX_FAILURES from one address within FAILURE_WINDOW seconds, that address is locked out of
# that account for LOCKOUT_BASE seconds, doubled by each further failure after a lockout ends, up
# to LOCKOUT_MAX: a flood from one address cannot lock the owner out from another. Unknown e-mails
# are counted too, so a lockout says nothing about whether an account exists. A successful login
# clears its address's count.
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
LOCKOUT_BASE = 60
LOCKOUT_MAX = 60 * 60
# Across addresses: once an account has SLOWDOWN_AFTER failures within FAILURE_WINDOW, it takes one
# attempt per SLOWDOWN_INTERVAL seconds from anywhere (the others get 429 with Retry-After), which
# slows a guesser with many addresses to a crawl and delays the owner by seconds at most.
SLOWDOWN_AFTER = 20
SLOWDOWN_INTERVAL = 2


def _keys(role: str, email: str, address: str) -> tuple[str, str, str, str]:
    """(failures of this address, its lock, failures from anywhere, the account's pace)."""
    account = f"{role}:{email.strip().lower()}"
    return (f"login:failures:{account}:{address}", f"login:lock:{account}:{address}",
            f"login:failures:{account}", f"login:pace:{account}")


def _refuse(seconds: int, why: str) -> RateLimited:
    return RateLimited(f"{why}; try again in {seconds} seconds", headers={"Retry-After": str(seconds)})


async def check_lockout(redis: aioredis.Redis, role: str, email: str, address: str) -> None:
    """Raise 429 with Retry-After while this address is locked out of the account, or the account is slowed."""
    _, lock, account_failures, pace = _keys(role, email, address)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.ttl(lock)
        pipe.get(account_failures)
        remaining, failures = await pipe.execute()
    if remaining and remaining > 0:
        raise _refuse(remaining, "Too many failed logins")
    if failures is not None and int(failures) >= SLOWDOWN_AFTER:
        if not await redis.set(pace, 1, ex=SLOWDOWN_INTERVAL, nx=True):
            raise _refuse(SLOWDOWN_INTERVAL, "Too many failed logins for this account")


async def record_failure(redis: aioredis.Redis, role: str, email: str, address: str) -> int:
    """Count a failed login; lock the address out once its count reaches MAX_FAILURES. Return its count."""
    failures, lock, account_failures, _ = _keys(role, email, address)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(failures, 0, ex=FAILURE_WINDOW, nx=True)
        pipe.incr(failures)
        pipe.set(account_failures, 0, ex=FAILURE_WINDOW, nx=True)
        pipe.incr(account_failures)
        _, count, _, _ = await pipe.execute()
    if count >= MAX_FAILURES:
        seconds = min(LOCKOUT_BASE * 2 ** (count - MAX_FAILURES), LOCKOUT_MAX)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(lock, count, ex=seconds)
            # Keep counting through the lockout, so the next failure locks for longer.
            pipe.expire(failures, seconds + FAILURE_WINDOW)
            await pipe.execute()
    return count


async def clear_failures(redis: aioredis.Redis, role: str, email: str, address: str) -> None:
    """Forget an address's failed logins at an account (after a successful one)."""
    await redis.delete(*_keys(role, email, address)[:2])
