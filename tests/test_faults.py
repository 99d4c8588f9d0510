"""Faults mid-conversation on `serve --workers 2`: a worker SIGKILLed, Redis killed and started again
empty, every PostgreSQL backend of the app terminated. Visitors and agents keep exchanging numbered
messages through it all (reconnecting with `since`, resending what was not acked with the same
clientMessageId); afterwards every message is stored once with gapless seqs, each side got every
message of its chat once, the killed worker was replaced, and /api/health answers 200 within 10 s.
Each test starts its own supervisor and its own Redis, and terminates only backends of the test
database."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import pytest

from amoiq_chat import db

from .chat_fixtures import make_tenant
from .chat_load import check_every_message, close_all, open_pairs, talk, when_acked
from .fault_fixtures import OwnRedis, Supervised, health

HEALTHY_WITHIN = 10.0


@pytest.fixture
def own_redis():
    with OwnRedis() as own:
        yield own


async def new_tenant(settings, agents: int):
    """A tenant with `agents` agents (made over a pool of its own, closed at once)."""
    pool = await db.create_pool(settings.database_url, 1, 1)
    try:
        return await make_tenant(pool, settings, agents=agents)
    finally:
        pool.close()
        await pool.wait_closed()


@pytest.fixture
def supervised(settings, own_redis, tmp_path):
    server = Supervised(settings, tmp_path / "serve.log", workers=2, REDIS_URL=own_redis.url)
    try:
        server.wait_serving()
        yield server
    finally:
        code = server.stop()
        assert code == 0, server.log()[-4000:]


async def healthy_within(url: str, seconds: float = HEALTHY_WITHIN) -> float:
    """Seconds until /api/health answers 200 (fails the test after `seconds`)."""
    started = time.monotonic()
    while await asyncio.to_thread(health, url) != 200:
        assert time.monotonic() - started < seconds, f"/api/health not 200 within {seconds} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def until_health(url: str, status: int, seconds: float) -> None:
    """Wait until /api/health answers `status`."""
    started = time.monotonic()
    while await asyncio.to_thread(health, url) != status:
        assert time.monotonic() - started < seconds, f"/api/health not {status} within {seconds} s"
        await asyncio.sleep(0.1)


def terminate_app_backends(db_conn) -> int:
    """pg_terminate_backend every connection of the app (pools and writers) to the test database."""
    with db_conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name LIKE %s AND pid <> pg_backend_pid()", (db.APPLICATION_NAME + "%",))
        return len(cur.fetchall())


async def kill_a_worker(server: Supervised, own_redis: OwnRedis, db_conn) -> None:
    """SIGKILL one worker; the supervisor must replace it."""
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    await healthy_within(server.url)
    replaced = await asyncio.to_thread(server.wait_serving, 60, {victim})
    assert victim not in replaced and len(replaced) == 2


async def restart_redis_empty(server: Supervised, own_redis: OwnRedis, db_conn) -> None:
    """Kill Redis (health says 503 meanwhile), start it again empty."""
    own_redis.kill()
    await until_health(server.url, 503, 10)
    own_redis.start()
    await healthy_within(server.url)


async def end_postgres_backends(server: Supervised, own_redis: OwnRedis, db_conn) -> None:
    """Terminate every PostgreSQL backend of the app, as a failover does."""
    assert terminate_app_backends(db_conn) >= 2  # at least each worker's writer
    await healthy_within(server.url)


FAULTS = {"worker SIGKILLed": kill_a_worker, "Redis restarted empty": restart_redis_empty,
          "PostgreSQL backends terminated": end_postgres_backends}


async def converse_through(faults, server, own_redis, settings, db_conn, *, agents: int, count: int,
                           timeout: float) -> int:
    """`agents` chats each exchanging 2 x `count` messages, the faults injected in turn along the way;
    then every check. Returns the number of messages stored."""
    tenant = await new_tenant(settings, agents)
    async with aiohttp.ClientSession() as http:
        pairs = await open_pairs(http, tenant, server.url, server.url)
        try:
            load = asyncio.create_task(talk(pairs, count, timeout))
            total = 2 * agents * count
            for n, fault in enumerate(faults, 1):
                await asyncio.wait([load, asyncio.create_task(when_acked(pairs, total * n // (len(faults) + 1)))],
                                   return_when=asyncio.FIRST_COMPLETED)
                assert not load.done(), "the load ended before the fault"
                await fault(server, own_redis, db_conn)
            await load
            return await check_every_message(pairs, db_conn, count)
        except BaseException:
            print("acked:", {c.name: len(c.acked) for pair in pairs for c in pair},
                  "refusals:", {c.name: dict(c.refusals) for pair in pairs for c in pair if c.refusals},
                  "connects:", {c.name: c.connects for pair in pairs for c in pair})
            print(server.log()[-8000:])  # shown with the failure
            raise
        finally:
            await close_all(pairs)


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_no_message_is_lost_or_doubled_through_a_fault(fault, supervised, own_redis, settings, db_conn):
    stored = await converse_through([FAULTS[fault]], supervised, own_redis, settings, db_conn,
                                    agents=6, count=60, timeout=120)
    assert stored == 6 * 2 * 60


@pytest.mark.timeout(300)
async def test_soak_of_ten_thousand_messages_through_one_fault_of_each_kind(supervised, own_redis, settings,
                                                                            db_conn):
    stored = await converse_through(list(FAULTS.values()), supervised, own_redis, settings, db_conn,
                                    agents=20, count=250, timeout=240)
    assert stored == 10_000
    assert "a new one starts now" in supervised.log()


async def test_two_hosts_a_visitor_on_one_and_its_agent_on_the_other(settings, own_redis, db_conn, tmp_path):
    hosts = [Supervised(settings, tmp_path / f"{host}.log", workers=None, host=host, REDIS_URL=own_redis.url)
             for host in ("127.0.0.2", "127.0.0.3")]
    try:
        first, second = [await asyncio.to_thread(host.wait_answering) for host in hosts]
        tenant = await new_tenant(settings, 3)
        async with aiohttp.ClientSession() as http:
            pairs = await open_pairs(http, tenant, first.url, second.url)
            assert {v.base for v, _ in pairs} == {"ws://127.0.0.2:%d" % first.port}
            assert {a.base for _, a in pairs} == {"ws://127.0.0.3:%d" % second.port}
            try:
                await talk(pairs, 20, timeout=60)
                assert await check_every_message(pairs, db_conn, 20) == 3 * 2 * 20
            finally:
                await close_all(pairs)
    finally:
        codes = [host.stop() for host in hosts]
    assert codes == [0, 0], [host.log()[-2000:] for host in hosts]
