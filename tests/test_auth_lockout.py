"""Failed logins counted per account in Redis (shared by processes); 429 with a growing lockout."""
import asyncio

import redis.asyncio as aioredis

from amoiq_chat.services.lockout import LOCKOUT_BASE, MAX_FAILURES, SLOWDOWN_AFTER, SLOWDOWN_INTERVAL

from .factories import create_agent, expect, expect_error, register_admin, unique


def source(address: str | None) -> dict[str, str]:
    """Headers making a request come from `address` (the test app trusts 127.0.0.1 as a proxy)."""
    return {"X-Forwarded-For": address} if address else {}


async def fail(client, email, times, path="/api/auth/login", address=None):
    for _ in range(times):
        await expect_error(await client.post(path, json={"email": email, "password": "wrong-password"},
                                             headers=source(address)), 401, "UNAUTHORIZED")


async def locked(client, email, password, path="/api/auth/login", address=None) -> int:
    """Assert the account answers 429 even to the right password; return Retry-After."""
    resp = await client.post(path, json={"email": email, "password": password}, headers=source(address))
    await expect_error(resp, 429, "RATE_LIMIT_EXCEEDED")
    return int(resp.headers["Retry-After"])


async def test_five_failures_lock_the_account_even_for_the_right_password(client):
    admin = await register_admin(client)
    await fail(client, admin.email, MAX_FAILURES)
    retry = await locked(client, admin.email, admin.password)
    assert 0 < retry <= LOCKOUT_BASE
    # Another account from the same address is not affected.
    other = await register_admin(client)
    await expect(await client.post("/api/auth/login", json={"email": other.email, "password": other.password}), 200)


async def test_unknown_email_locks_the_same_way(client):
    email = unique("nobody") + "@example.com"
    await fail(client, email, MAX_FAILURES)
    assert 0 < await locked(client, email, "whatever-password") <= LOCKOUT_BASE


async def test_lockout_grows_with_failures_after_it_ends(client, settings):
    admin = await register_admin(client)
    await fail(client, admin.email, MAX_FAILURES)
    first = await locked(client, admin.email, admin.password)
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        # The lockout ends (its key expires), and the next attempt fails again.
        assert await redis.delete(f"login:lock:admin:{admin.email.lower()}:127.0.0.1") == 1
    finally:
        await redis.aclose()
    await fail(client, admin.email, 1)
    second = await locked(client, admin.email, admin.password)
    assert second > first and second <= 2 * LOCKOUT_BASE


async def test_a_flood_from_one_address_does_not_lock_the_owner_out_from_another(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(trusted_proxies=("127.0.0.1",)))
    admin = await register_admin(client)
    await fail(client, admin.email, MAX_FAILURES, address="203.0.113.9")
    for _ in range(10):  # the flood goes on, locked out
        await locked(client, admin.email, "wrong-password", address="203.0.113.9")
    await locked(client, admin.email, admin.password, address="203.0.113.9")
    resp = await client.post("/api/auth/login", json={"email": admin.email, "password": admin.password},
                             headers=source("198.51.100.7"))
    await expect(resp, 200)


async def test_failures_from_many_addresses_slow_the_account_down_without_locking_it(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(trusted_proxies=("127.0.0.1",)))
    admin = await register_admin(client)
    for n in range(SLOWDOWN_AFTER):  # a guesser with many addresses, each under the per-address limit
        await fail(client, admin.email, 1, address=f"203.0.113.{n + 1}")
    await fail(client, admin.email, 1, address="192.0.2.1")  # this attempt takes the account's one slot
    resp = await client.post("/api/auth/login", json={"email": admin.email, "password": "wrong-password"},
                             headers=source("192.0.2.2"))
    await expect_error(resp, 429, "RATE_LIMIT_EXCEEDED")
    assert 0 < int(resp.headers["Retry-After"]) <= SLOWDOWN_INTERVAL
    # The owner, elsewhere, is slowed by seconds, never locked out.
    owner = source("198.51.100.7")
    for _ in range(20):
        resp = await client.post("/api/auth/login", json={"email": admin.email, "password": admin.password},
                                 headers=owner)
        if resp.status == 200:
            break
        await expect_error(resp, 429, "RATE_LIMIT_EXCEEDED")
        await asyncio.sleep(float(resp.headers["Retry-After"]))  # what the client is told to do
    assert resp.status == 200


async def test_a_successful_login_clears_the_count(client):
    admin = await register_admin(client)
    await fail(client, admin.email, MAX_FAILURES - 1)
    await expect(await client.post("/api/auth/login", json={"email": admin.email, "password": admin.password}), 200)
    await fail(client, admin.email, MAX_FAILURES - 1)
    await expect(await client.post("/api/auth/login", json={"email": admin.email, "password": admin.password}), 200)


async def test_failures_are_counted_across_processes(aiohttp_client, make_app):
    first, second = await aiohttp_client(make_app()), await aiohttp_client(make_app())
    admin = await register_admin(first)
    await fail(first, admin.email, 3)
    await fail(second, admin.email, MAX_FAILURES - 3)
    await locked(second, admin.email, admin.password)
    await locked(first, admin.email, admin.password)


async def test_agent_login_locks_too(client):
    admin = await register_admin(client)
    agent = await create_agent(client, admin)
    await fail(client, agent.email, MAX_FAILURES, path="/api/auth/agent-login")
    await locked(client, agent.email, agent.password, path="/api/auth/agent-login")
    # The admin login of the same address is a different account.
    await fail(client, agent.email, 1)


async def test_login_is_503_while_redis_is_down(aiohttp_client, make_app, redis_server):
    url, process = redis_server
    client = await aiohttp_client(make_app(redis_url=url))
    admin = await register_admin(client)
    process.terminate()
    process.wait(10)
    await expect_error(await client.post("/api/auth/login", json={"email": admin.email, "password": admin.password}),
                       503, "SERVICE_UNAVAILABLE")
    # Token-authenticated routes do not need Redis.
    await expect(await client.get("/api/auth/me", headers=admin.headers), 200)
