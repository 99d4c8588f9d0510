"""Two server processes on two ports, one PostgreSQL and one Redis: a visitor on one, agents on the other."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
import redis.asyncio as aioredis

from amoiq_chat import db

from .chat_fixtures import ServerProcess, closed_with, collect, make_tenant, nothing_more, recv, session_id, until


@pytest.fixture(scope="module")
def servers(settings):
    a, b = ServerProcess(settings), ServerProcess(settings)
    try:
        yield a.wait(), b.wait()
    finally:
        logs = a.stop() + b.stop()
        assert "Traceback" not in logs, logs


@pytest.fixture
async def pool(servers, settings):
    pool = await db.create_pool(settings.database_url, 1, 3)
    try:
        yield pool
    finally:
        pool.close()
        await pool.wait_closed()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def open_visitor(http, server, sid, tenant, *, since=None, replayed=None):
    """A tokenless visitor socket that joined its session with a `join` frame (replayed frames come first)."""
    url = f"{server.ws_url}/ws/{sid}" + (f"?since={since}" if since is not None else "")
    ws = await http.ws_connect(url)
    assert (await recv(ws))["type"] == "connection_status"
    await ws.send_json({"type": "join", "sessionId": sid, "siteKey": tenant.site_key, **tenant.proof(sid)})
    joined = await until(ws, "connection_status", skipped=replayed)
    assert joined["status"] == "joined"
    tenant.keep_secret(sid, joined)
    return ws


async def open_staff(http, server, member_id, token):
    ws = await http.ws_connect(f"{server.ws_url}/ws/agent/{member_id}?token={token}")
    status = await recv(ws)
    assert status["type"] == "connection_status" and status["status"] == "connected"
    return ws


async def accepted_by(http, server, agent, sid):
    """An agent's socket that accepted the chat."""
    staff = await open_staff(http, server, agent["id"], agent["token"])
    await staff.send_json({"type": "accept_chat", "sessionId": sid})
    await until(staff, "chat_accepted")
    return staff


async def visitor_says(ws, sid, text, cmid):
    await ws.send_json({"type": "message", "sessionId": sid, "message": text, "clientMessageId": cmid})
    return (await until(ws, "ack"))


async def test_visitor_and_agent_on_two_processes(servers, pool, http, settings, db_conn):
    a, b = servers
    tenant = await make_tenant(pool, settings, agents=1)
    other = await make_tenant(pool, settings, agents=1)
    agent = tenant.agents[0]
    sid = session_id()
    spy = await open_staff(http, a, other.admin_id, other.admin_token)  # another tenant's admin

    visitor = await open_visitor(http, a, sid, tenant)
    first = await visitor_says(visitor, sid, "Hello, I need help", "c-0")
    staff = await open_staff(http, b, agent["id"], agent["token"])
    await staff.send_json({"type": "accept_chat", "sessionId": sid, "agentId": agent["id"]})
    accepted = await until(staff, "chat_accepted")
    assert accepted["fullHistory"] is True
    assert [(m["id"], m["text"], m["sender"], m["isAI"]) for m in accepted["messages"]] == \
        [(first["id"], "Hello, I need help", "customer", False)]
    joined = await until(visitor, "agent_joined")
    assert joined["agentName"] == agent["name"]

    # Visitor -> agent: each arrives once, in order, its text intact through Redis (UTF-8 beyond ASCII).
    said = [f"visitor {n}: ça va? 👋" for n in range(1, 4)]
    acks = [await visitor_says(visitor, sid, text, f"c-{n}") for n, text in enumerate(said, 1)]
    got = [await until(staff, "new_message") for _ in range(3)]
    assert [f["message"]["text"] for f in got] == said
    assert [f["message"]["id"] for f in got] == [ack["id"] for ack in acks]
    assert [f["message"]["sender"] for f in got] == ["customer"] * 3

    # Agent -> visitor: each arrives once, in order, as `message` (004) and `meta_message_created` (001).
    for n in range(3):
        await staff.send_json({"type": "send_message", "sessionId": sid, "text": f"agent {n}", "clientMessageId": f"a-{n}"})
        await until(staff, "ack")
    replies = [await until(visitor, "message") for _ in range(3)]
    assert [r["message"] for r in replies] == ["agent 0", "agent 1", "agent 2"]
    assert all(r["metadata"] == {"agentName": agent["name"], "isAI": False} for r in replies)

    # Nothing arrives twice.
    rest_visitor = await nothing_more(visitor)
    rest_staff = await nothing_more(staff)
    assert [f for f in rest_visitor if f["type"] == "message"] == []
    assert [f for f in rest_staff if f["type"] == "new_message" and f["message"]["sender"] == "customer"] == []

    with db_conn.cursor() as cur:
        cur.execute("SELECT seq, sender_type, message FROM messages WHERE session_id = %s ORDER BY seq", (sid,))
        rows = cur.fetchall()
    assert [r[0] for r in rows] == list(range(1, 8))
    assert [r[2] for r in rows] == ["Hello, I need help", *said, "agent 0", "agent 1", "agent 2"]

    resp = await http.get(f"{b.url}/api/chat/messages", params={"tenantId": tenant.id, "sessionId": sid},
                          headers=tenant.bearer(tenant.secret_key))
    assert resp.status == 200
    history = (await resp.json())["messages"]
    assert [(m["text"], m["sender"]) for m in history] == [(r[2], "user" if r[1] == "visitor" else "agent") for r in rows]

    # The other tenant saw none of it and cannot read it.
    assert await nothing_more(spy) == []
    resp = await http.get(f"{a.url}/api/chat/messages", params={"tenantId": tenant.id, "sessionId": sid},
                          headers=other.bearer(other.secret_key))
    assert resp.status == 403
    for ws in (visitor, staff, spy):
        await ws.close()


async def test_two_tabs_on_two_processes_both_receive(servers, pool, http, settings):
    a, b = servers
    tenant = await make_tenant(pool, settings, agents=1)
    agent = tenant.agents[0]
    sid = session_id()
    tab1 = await open_visitor(http, a, sid, tenant)
    tab2 = await open_visitor(http, b, sid, tenant)
    staff = await accepted_by(http, a, agent, sid)

    ack = await visitor_says(tab1, sid, "from tab one", "t1")
    other_tab = await until(tab2, "meta_message_created")
    assert other_tab["message"]["id"] == ack["id"] and other_tab["message"]["text"] == "from tab one"

    await staff.send_json({"type": "send_message", "sessionId": sid, "text": "to both tabs"})
    for tab in (tab1, tab2):
        assert (await until(tab, "message"))["message"] == "to both tabs"
    for ws in (tab1, tab2, staff):
        await ws.close()


async def test_reconnect_with_since_gets_exactly_what_was_missed(servers, pool, http, settings):
    a, b = servers
    tenant = await make_tenant(pool, settings, agents=1)
    agent = tenant.agents[0]
    sid = session_id()
    visitor = await open_visitor(http, a, sid, tenant)
    last = (await visitor_says(visitor, sid, "hi", "r-0"))["seq"]
    staff = await accepted_by(http, b, agent, sid)
    await visitor.close()

    for n in range(3):
        await staff.send_json({"type": "send_message", "sessionId": sid, "text": f"missed {n}"})
        await until(staff, "ack")

    frames = []
    visitor = await open_visitor(http, a, sid, tenant, since=last, replayed=frames)
    replayed = [f for f in frames if f["type"] == "message"]
    assert [f["message"] for f in replayed] == ["missed 0", "missed 1", "missed 2"]
    assert [f["seq"] for f in replayed] == [last + 1, last + 2, last + 3]

    await staff.send_json({"type": "send_message", "sessionId": sid, "text": "live again"})
    live = await until(visitor, "message")
    assert live["message"] == "live again" and live["seq"] == last + 4
    assert [f for f in await nothing_more(visitor) if f["type"] == "message"] == []
    for ws in (visitor, staff):
        await ws.close()


async def test_presence_on_the_admin_socket_across_processes(servers, pool, http, settings):
    a, b = servers
    tenant = await make_tenant(pool, settings, agents=0)
    other = await make_tenant(pool, settings, agents=0)
    admin = await open_staff(http, b, tenant.admin_id, tenant.admin_token)
    spy = await open_staff(http, b, other.admin_id, other.admin_token)
    sid = session_id()

    tab1 = await open_visitor(http, a, sid, tenant)
    online = await until(admin, "user_online")
    assert online["sessionId"] == sid and online["userId"] is None
    tab2 = await open_visitor(http, b, sid, tenant)
    await admin.send_json({"type": "get_online_users"})
    listed = await until(admin, "online_users_list")
    assert [u["sessionId"] for u in listed["users"]] == [sid]

    await tab1.close()
    assert [f for f in await nothing_more(admin) if f["type"].startswith("user_")] == []
    await tab2.close()
    offline = await until(admin, "user_offline")
    assert offline["sessionId"] == sid
    resp = await http.get(f"{a.url}/api/chat/online-users", params={"tenantId": tenant.id},
                          headers=tenant.bearer(tenant.admin_token))
    assert (await resp.json())["users"] == []
    assert await nothing_more(spy) == []
    for ws in (admin, spy):
        await ws.close()


async def test_two_agents_accepting_at_once_exactly_one_wins(servers, pool, http, settings, db_conn):
    a, b = servers
    tenant = await make_tenant(pool, settings, agents=2)
    sid = session_id()
    visitor = await open_visitor(http, a, sid, tenant)
    await visitor_says(visitor, sid, "anyone?", "x-0")
    first = await open_staff(http, a, tenant.agents[0]["id"], tenant.agents[0]["token"])
    second = await open_staff(http, b, tenant.agents[1]["id"], tenant.agents[1]["token"])

    await asyncio.gather(first.send_json({"type": "accept_chat", "sessionId": sid}),
                         second.send_json({"type": "accept_chat", "sessionId": sid}))
    outcomes = []
    for ws in (first, second):
        frame = await recv(ws)
        while frame["type"] not in ("chat_accepted", "error"):
            frame = await recv(ws)
        outcomes.append(frame)
    kinds = sorted(f["type"] for f in outcomes)
    assert kinds == ["chat_accepted", "error"]
    error = next(f for f in outcomes if f["type"] == "error")
    assert error["code"] == "CONFLICT" and error["frameType"] == "accept_chat"
    winner = tenant.agents[[f["type"] for f in outcomes].index("chat_accepted")]["id"]
    with db_conn.cursor() as cur:
        cur.execute("SELECT assigned_agent_id, status, ai_mode FROM sessions WHERE session_id = %s", (sid,))
        assert cur.fetchone() == (winner, "active", False)
    for ws in (visitor, first, second):
        await ws.close()


async def test_both_sides_writing_at_once_every_socket_sees_one_gapless_order(servers, pool, http, settings):
    a, b = servers
    tenant = await make_tenant(pool, settings, agents=1)
    sid = session_id()
    visitor = await open_visitor(http, a, sid, tenant)
    await visitor_says(visitor, sid, "start", "s-0")
    staff = await accepted_by(http, b, tenant.agents[0], sid)
    watcher = await open_visitor(http, b, sid, tenant)  # another tab, on the agent's process

    async def visitor_burst():
        for n in range(20):
            await visitor.send_json({"type": "message", "message": f"v{n}", "clientMessageId": f"v{n}"})

    async def agent_burst():
        for n in range(20):
            await staff.send_json({"type": "send_message", "sessionId": sid, "text": f"a{n}"})

    await asyncio.gather(visitor_burst(), agent_burst())
    seen = []
    while len(seen) < 40:
        frame = await until(watcher, "meta_message_created")
        seen.append(frame["message"]["seq"])
    assert seen == list(range(2, 42))
    staff_seen = []
    while len(staff_seen) < 40:
        staff_seen.append((await until(staff, "new_message"))["message"]["seq"])
    assert staff_seen == list(range(2, 42))
    for ws in (visitor, staff, watcher):
        await ws.close()


async def test_graceful_stop_closes_sockets_with_1001_and_clears_presence(settings, pool, http):
    server = ServerProcess(settings)
    try:
        server.wait()
        tenant = await make_tenant(pool, settings, agents=1)
        sid = session_id()
        visitor = await open_visitor(http, server, sid, tenant)
        agent = tenant.agents[0]
        staff = await open_staff(http, server, agent["id"], agent["token"])
        users = await (await http.get(f"{server.url}/api/chat/online-users", params={"tenantId": tenant.id},
                                      headers=tenant.bearer(tenant.secret_key))).json()
        assert [u["sessionId"] for u in users["users"]] == [sid]
        server.terminate()
        codes = [await closed_with(visitor, timeout=15), await closed_with(staff, timeout=15)]
    finally:
        logs = server.stop()
    assert codes == [1001, 1001], logs
    assert "Traceback" not in logs, logs
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        assert await client.hgetall(f"online_users:{tenant.id}") == {}
    finally:
        await client.aclose()


async def test_an_agent_deactivated_on_one_process_loses_its_sockets_on_the_other(servers, pool, http, settings):
    a, b = servers
    tenant = await make_tenant(pool, settings, agents=3)
    admin = {"Authorization": f"Bearer {tenant.admin_token}"}
    sockets = [await open_staff(http, b, agent["id"], agent["token"]) for agent in tenant.agents]
    changes = [{"is_active": False}, {"password": "a-whole-new-passphrase"}, None]  # None: deleted

    async def revoked(ws):  # a live client: it reads all along
        error = await until(ws, "error", timeout=60)
        return error["code"], await closed_with(ws, timeout=5)

    reading = [asyncio.create_task(revoked(ws)) for ws in sockets]
    for agent, change, task in zip(tenant.agents, changes, reading):
        url = f"{a.url}/api/agents/{agent['id']}"
        resp = await (http.put(url, json=change, headers=admin) if change else http.delete(url, headers=admin))
        assert resp.status == 200, await resp.text()
        await asyncio.wait([task], timeout=5)  # within 5 s of the change, on the other process
        assert task.done() and task.result() == ("INVALID_JWT_TOKEN", 1008)
    # And the tokens of the deactivated and the deleted agent no longer open a socket.
    for agent in (tenant.agents[0], tenant.agents[2]):
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{b.ws_url}/ws/agent/{agent['id']}?token={agent['token']}")
