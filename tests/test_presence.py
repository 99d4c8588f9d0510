"""Presence in Redis: the SPEC's keys, the last socket anywhere, and the sweeper of dead processes."""
from __future__ import annotations

import asyncio
import json

from amoiq_chat.appkeys import BUS, DB, PRESENCE, REDIS, SETTINGS
from amoiq_chat.services.presence import Presence
from amoiq_chat.workers.presence import PresenceWorker

from .chat_fixtures import make_tenant, nothing_more, recv, session_id, until


async def test_presence_keys_follow_the_spec(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    sid = session_id()
    ws = await client.ws_connect(f"/ws/{sid}", headers={"Origin": "https://example.com"})
    await recv(ws)
    await ws.send_json({"type": "join", "siteKey": tenant.site_key, "userId": "user-9", "fingerprint": "fp-9",
                        "url": "https://example.com/page"})
    await until(ws, "connection_status")
    entry = json.loads(await app[REDIS].hget(f"online_users:{tenant.id}", "user-9"))
    assert entry == {**entry, "sessionId": sid, "domain": "example.com", "origin": "https://example.com",
                     "url": "https://example.com/page"}
    assert entry["connectedAt"].endswith("Z")
    cached = json.loads(await app[REDIS].get(f"session:{sid}"))
    assert cached["userId"] == "user-9" and cached["fingerprint"] == "fp-9" and cached["tenantId"] == tenant.id
    assert 86000 < await app[REDIS].ttl(f"session:{sid}") <= 86400
    await ws.close()
    admin = await client.ws_connect(f"/ws/agent/{tenant.admin_id}?token={tenant.admin_token}")
    await recv(admin)
    await admin.send_json({"type": "get_online_users"})
    assert (await until(admin, "online_users_list"))["users"] == []
    await admin.close()


async def test_sweeper_clears_a_dead_process_and_says_user_offline(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    admin = await client.ws_connect(f"/ws/agent/{tenant.admin_id}?token={tenant.admin_token}")
    await recv(admin)
    # Another process held two visitors, one also connected here, then died without cleaning up.
    dead = Presence(app[REDIS], "dead-process-" + session_id(), ttl=15)
    await dead.beat()
    only_there, also_here = session_id(), session_id()
    for sid in (only_there, also_here):
        await dead.connected(tenant.id, f"anon:{sid}", {"sessionId": sid, "connectedAt": "2024-01-15T10:30:00.000Z"})
    ws = await client.ws_connect(f"/ws/{also_here}")
    await recv(ws)
    await ws.send_json({"type": "join", "siteKey": tenant.site_key})
    await until(ws, "connection_status")

    worker = PresenceWorker(app[PRESENCE], app[BUS])
    assert await worker.run_once() == 0  # its heartbeat is still alive
    await app[REDIS].delete(f"presence:process:{dead.process_id}")  # the heartbeat expires
    assert await worker.run_once() == 1
    offline = await until(admin, "user_offline")
    assert offline["sessionId"] == only_there
    assert [f for f in await nothing_more(admin) if f["type"] == "user_offline"] == []
    users = await app[PRESENCE].online(tenant.id)
    assert [u["sessionId"] for u in users] == [also_here]
    assert not await app[REDIS].sismember("presence:processes", dead.process_id)
    assert await worker.run_once() == 0
    await ws.close()
    assert (await until(admin, "user_offline"))["sessionId"] == also_here
    await admin.close()


async def test_a_burst_of_closing_sockets_clears_every_presence_entry(aiohttp_client, make_app):
    """40 visitors leave at once through a Redis pool of 3: each user_offline is said, no entry stays."""
    client = await aiohttp_client(make_app(redis_pool_max=3))
    app = client.app
    tenant = await make_tenant(app[DB], app[SETTINGS], agents=0)
    admin = await client.ws_connect(f"/ws/agent/{tenant.admin_id}?token={tenant.admin_token}")
    await recv(admin)
    visitors, sids = [], set()
    for _ in range(40):
        sid = session_id()
        ws = await client.ws_connect(f"/ws/{sid}")
        await recv(ws)
        await ws.send_json({"type": "join", "siteKey": tenant.site_key})
        await until(ws, "connection_status")
        visitors.append(ws)
        sids.add(sid)
    assert await app[REDIS].hlen(f"online_users:{tenant.id}") == 40
    await asyncio.gather(*(ws.close() for ws in visitors))
    offline = set()
    while offline != sids:
        offline.add((await until(admin, "user_offline", timeout=10))["sessionId"])
    assert await app[REDIS].hlen(f"online_users:{tenant.id}") == 0
    await admin.close()
