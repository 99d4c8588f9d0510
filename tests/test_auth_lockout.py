"""Failed logins counted per account in Redis (shared by processes); 429 with a growing lockout."""
import redis.asyncio as aioredis

from amoiq_chat.services.lockout import LOCKOUT_BASE, MAX_FAILURES

from .factories import create_agent, expect, expect_error, register_admin, unique


async def fail(client, email, times, path="/api/auth/login"):
    for _ in range(times):
        await expect_error(await client.post(path, json={"email": email, "password": "wrong-password"}), 401,
                           "UNAUTHORIZED")


async def locked(client, email, password, path="/api/auth/login") -> int:
    """Assert the account answers 429 even to the right password; return Retry-After."""
    resp = await client.post(path, json={"email": email, "password": password})
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
        assert await redis.delete(f"login:lock:admin:{admin.email.lower()}") == 1
    finally:
        await redis.aclose()
    await fail(client, admin.email, 1)
    second = await locked(client, admin.email, admin.password)
    assert second > first and second <= 2 * LOCKOUT_BASE


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
