"""The queue across processes: one recalculation per change, only changed figures pushed; auto assignment."""
from __future__ import annotations

import asyncio

import pytest

from amoiq_chat import db
from amoiq_chat.appkeys import DB, QUEUE_WORKER, SETTINGS, SUPPORT

from .chat_fixtures import make_tenant, nothing_more, recv, session_id, until


@pytest.fixture
async def two_apps(aiohttp_client, make_app):
    """Two applications on the same PostgreSQL and Redis: two processes in one test."""
    return await aiohttp_client(make_app()), await aiohttp_client(make_app())


async def visitor(client, tenant, sid):
    ws = await client.ws_connect(f"/ws/{sid}")
    await recv(ws)
    await ws.send_json({"type": "join", "siteKey": tenant.site_key})
    await until(ws, "connection_status")
    return ws


async def escalate(client, tenant, sid):
    resp = await client.post(f"/api/widgets/escalate/{tenant.site_key}/{sid}")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def test_one_recalculation_per_change_and_only_changed_figures_pushed(two_apps):
    a, b = two_apps
    wa, wb = a.app[QUEUE_WORKER], b.app[QUEUE_WORKER]
    for worker in (wa, wb):  # driven by hand from here on
        await worker.stop()
    tenant = await make_tenant(a.app[DB], a.app[SETTINGS], agents=1)
    sids = [session_id() for _ in range(3)]
    sockets = [await visitor(b if n % 2 else a, tenant, sid) for n, sid in enumerate(sids)]
    figures = [await escalate(a, tenant, sid) for sid in sids]
    assert [(f["queuePosition"], f["estimatedWait"]) for f in figures] == [(1, 2), (2, 4), (3, 6)]

    # Both processes run at once: the change is worked once, and each visitor told once. (Each
    # recalculates this tenant as run_once does every tenant: other tests' queues stay out of the counts.)
    pushed_before = wa.pushed + wb.pushed  # a round before the stop may have pushed another test's queue
    assert sorted(await asyncio.gather(wa.recalculate(tenant.id), wb.recalculate(tenant.id))) == [False, True]
    assert wa.pushed + wb.pushed - pushed_before == 3
    for n, ws in enumerate(sockets, 1):
        update = await until(ws, "queue_update")
        assert (update["position"], update["estimatedWait"]) == (n, 2 * n)
    # Nothing changed: nobody recalculates, nobody is told anything.
    assert await asyncio.gather(wa.recalculate(tenant.id), wb.recalculate(tenant.id)) == [False, False]
    for ws in sockets:
        assert [f for f in await nothing_more(ws, 0.2) if f["type"] == "queue_update"] == []

    # The head is accepted on B: the two behind it (on both processes) move up; the head hears nothing more.
    agent = tenant.agents[0]
    await b.app[SUPPORT].accept(tenant.id, sids[0], {"id": agent["id"], "name": agent["name"], "role": "agent"})
    before = wa.pushed + wb.pushed
    assert sorted(await asyncio.gather(wb.recalculate(tenant.id), wa.recalculate(tenant.id))) == [False, True]
    assert wa.pushed + wb.pushed - before == 2
    assert (await until(sockets[1], "queue_update"))["position"] == 1
    assert (await until(sockets[2], "queue_update"))["position"] == 2
    assert [f for f in await nothing_more(sockets[0], 0.2) if f["type"] == "queue_update"] == []
    await wa.run_once()  # every due tenant; this one is done already
    assert [f for f in await nothing_more(sockets[2], 0.2) if f["type"] == "queue_update"] == []
    # Both processes answer the same figures.
    for client in (a, b):
        got = await (await client.get(f"/api/widgets/queue-position/{tenant.site_key}/{sids[2]}")).json()
        assert got["data"]["position"] == 2
    for ws in sockets:
        await ws.close()


async def test_auto_assignment_gives_two_chats_to_two_agents_of_limit_one_and_queues_the_third(two_apps, db_conn):
    a, b = two_apps
    tenant = await make_tenant(a.app[DB], a.app[SETTINGS], agents=2)
    async with a.app[DB].acquire() as conn:
        await db.execute(conn, "UPDATE tenants SET assignment = 'auto' WHERE id = %s", (tenant.id,))
        await db.execute(conn, "UPDATE agents SET max_concurrent_chats = 1 WHERE tenant_id = %s", (tenant.id,))
    staff = []
    for client, agent in zip((a, b), tenant.agents):  # one agent on each process
        ws = await client.ws_connect(f"/ws/agent/{agent['id']}?token={agent['token']}")
        assert (await recv(ws))["type"] == "connection_status"
        staff.append(ws)
    sids = [session_id() for _ in range(3)]
    visitors = [await visitor(b, tenant, sid) for sid in sids]
    for sid in sids:
        await escalate(a, tenant, sid)

    accepted = [(await until(ws, "chat_accepted"))["sessionId"] for ws in staff]
    assert sorted(accepted) == sorted(sids[:2])  # the head of the queue first, one each
    for ws in visitors[:2]:
        await until(ws, "agent_joined")
    third = await until(visitors[2], "queue_update")
    while third["position"] != 1:
        third = await until(visitors[2], "queue_update")
    with db_conn.cursor() as cur:
        cur.execute("SELECT session_id, status, assigned_agent_id FROM sessions WHERE session_id = ANY(%s)"
                    " ORDER BY session_id", (sids,))
        rows = {r[0]: r[1:] for r in cur.fetchall()}
    assert rows[sids[2]] == ("waiting", None)
    assert {rows[sid][1] for sid in sids[:2]} == {agent["id"] for agent in tenant.agents}

    # One agent closes their chat: they have room again, and the third chat goes to them.
    closer = accepted.index(sids[0])
    await staff[closer].send_json({"type": "close_chat", "sessionId": sids[0]})
    assert (await until(staff[closer], "chat_accepted"))["sessionId"] == sids[2]
    await until(visitors[2], "agent_joined")
    for ws in staff + visitors:
        await ws.close()


async def test_an_agent_is_available_while_any_socket_of_theirs_is_open_on_any_process(two_apps):
    a, b = two_apps
    tenant = await make_tenant(a.app[DB], a.app[SETTINGS], agents=2)
    one, two = (agent["id"] for agent in tenant.agents)
    board_a, board_b = a.app[SUPPORT].board, b.app[SUPPORT].board
    assert await board_b.online_agents(tenant.id) == []
    await board_a.agent_connected(tenant.id, one)
    await board_a.agent_connected(tenant.id, one)  # two tabs on process A
    await board_b.agent_connected(tenant.id, one)  # and one on process B
    await board_b.agent_connected(tenant.id, two)
    assert await board_a.online_agents(tenant.id) == sorted([one, two])
    await board_a.agent_disconnected(tenant.id, one)
    await board_a.agent_disconnected(tenant.id, one)
    assert await board_a.online_agents(tenant.id) == sorted([one, two])  # B still holds a socket
    await board_b.agent_disconnected(tenant.id, one)
    assert await board_a.online_agents(tenant.id) == [two]
    await b.app[QUEUE_WORKER].stop()  # a process that stops stops vouching for its agents
    assert await board_a.online_agents(tenant.id) == []
