"""Redis loses everything (killed and started again empty, or flushed with its clients killed) while a
process serves: its pool replaces the dead connections, its presence is rebuilt from its live sockets,
rate limits and login lockout count again, messages flow again, all within seconds."""
from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from amoiq_chat.app import redis_client
from amoiq_chat.appkeys import DB, PRESENCE, SETTINGS

from .chat_fixtures import make_tenant, recv, session_id, until
from .fault_fixtures import OwnRedis

WITHIN = 10.0  # seconds everything must be back in


async def eventually(check, what: str, timeout: float = WITHIN) -> float:
    """Await `check()` until it is true; the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if await check():
                return time.monotonic() - started
        except Exception:  # still failing: Redis not back yet
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)


async def flush_and_kill_clients(url: str) -> None:
    """FLUSHALL, then cut every client's connection (the commands' and the bus's)."""
    admin = aioredis.Redis.from_url(url)
    try:
        await admin.flushall()
        await admin.client_kill_filter(_type="pubsub", skipme=True)
        await admin.client_kill_filter(_type="normal", skipme=True)
    finally:
        await admin.aclose()


@pytest.mark.parametrize("fault", ["restarted empty", "flushed, clients killed"])
async def test_after_redis_loses_everything_presence_limits_and_messages_come_back(aiohttp_client, make_app,
                                                                                   settings, fault):
    with OwnRedis() as own:
        client = await aiohttp_client(make_app(redis_url=own.url,
                                               presence_ttl=3))
        app = client.app
        tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
        sid = session_id()
        visitor = await client.ws_connect(f"/ws/{sid}")
        await recv(visitor)
        await visitor.send_json({"type": "join", "siteKey": tenant.site_key})
        await until(visitor, "connection_status")
        admin = await client.ws_connect(f"/ws/agent/{tenant.admin_id}?token={tenant.admin_token}")
        await recv(admin)
        probe = redis_client(own.url, 2)  # (a plain redis-py 8 client would reuse its dead connection)
        try:
            assert await probe.hkeys(f"online_users:{tenant.id}") == [f"anon:{sid}".encode()]

            if fault == "restarted empty":
                await asyncio.to_thread(own.restart_empty)
            else:
                await flush_and_kill_clients(own.url)
            assert await probe.hkeys(f"online_users:{tenant.id}") == []

            # Presence is rebuilt from the live socket, and the staff are told the visitor is online.
            await eventually(lambda: probe.hexists(f"online_users:{tenant.id}", f"anon:{sid}"), "online_users rebuilt")
            assert await probe.exists(f"session:{sid}") == 1
            assert await probe.hget(f"presence:sockets:{tenant.id}:anon:{sid}", app_process(app)) == b"1"
            assert (await until(admin, "user_online", timeout=WITHIN))["sessionId"] == sid

            # Rate limits count again (the counted response carries the headers).
            async def counted():
                resp = await client.get("/api/widgets/nope/config")
                return "X-RateLimit-Remaining" in resp.headers
            await eventually(counted, "rate limit counting")
            assert any(k.startswith(b"ratelimit:http:") for k in await probe.keys("ratelimit:*"))

            # Login lockout counts failures again (a wrong password is recorded in Redis, not a 503).
            async def lockout_counts():
                resp = await client.post("/api/auth/login", json={"email": "nobody@example.com", "password": "wrong-pass-1"})
                return resp.status == 401 and await probe.exists("login:failures:admin:nobody@example.com") == 1
            await eventually(lockout_counts, "login lockout")

            # Messages flow: stored, acked, and published to the staff following the chat.
            await admin.send_json({"type": "sync", "sessionId": sid, "since": 0})
            await visitor.send_json({"type": "message", "message": "after the outage", "clientMessageId": "after-1"})
            ack = await until(visitor, "ack", timeout=WITHIN)
            seen = await until(admin, "new_message", timeout=WITHIN)
            assert seen["message"]["id"] == ack["id"] and seen["message"]["text"] == "after the outage"

            # And the socket's end still clears presence.
            await visitor.close()
            await eventually(lambda: _gone(probe, tenant.id, sid), "offline after close")
        finally:
            await probe.aclose()
            await admin.close()


def app_process(app) -> str:
    return app[PRESENCE].process_id


async def _gone(probe: aioredis.Redis, tenant_id: str, sid: str) -> bool:
    return not await probe.hexists(f"online_users:{tenant_id}", f"anon:{sid}")
