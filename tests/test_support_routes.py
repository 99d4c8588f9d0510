"""The workflow's routes and frames one by one: the seed's cURL example, refusals, ratings, events."""
from __future__ import annotations

import asyncio
import json
import shlex

import pytest

from amoiq_chat import credentials, db
from amoiq_chat.appkeys import DB, SETTINGS, SUPPORT

from .chat_fixtures import make_tenant, recv, session_id, until
from .factories import create_agent, expect, expect_error, fetch, register_admin


@pytest.fixture
async def chat(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=2)
    return client, tenant


async def new_session(client, tenant, sid=None):
    body = {"tenantId": tenant.id, "siteKey": tenant.site_key, "sessionId": sid or session_id()}
    answer = await expect(await client.post("/api/chat/session", json=body, headers=tenant.bearer()), 200)
    tenant.keep_secret(answer["sessionId"], answer)
    return answer["sessionId"]


async def test_the_seeds_escalate_curl_example_works_as_written(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    async with client.app[DB].acquire() as conn:  # the seed's widget-abc123 and session_123
        await db.execute(conn, "UPDATE widget_configs SET site_key = 'widget-abc123' WHERE site_key = %s",
                         (tenant.site_key,))
    tenant.site_key = "widget-abc123"
    await new_session(client, tenant, "session_123")
    command = ("curl -X POST http://localhost:5000/api/widgets/escalate/widget-abc123/session_123 \\\n"
               "  -H \"Content-Type: application/json\"")
    shell_line = command.replace("\\\n", "").replace("localhost:5000", f"127.0.0.1:{client.server.port}")
    argv = shlex.split(shell_line)  # as the shell reads it (a backslash-newline continues the line)
    process = await asyncio.create_subprocess_exec(*argv, "-s", "-w", "\n%{http_code}",
                                                   stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    body, status = out.decode().rsplit("\n", 1)
    assert status == "200"
    assert json.loads(body) == {"success": True, "message": "Chat escalated to human agent", "data": {
        "sessionId": "session_123", "queuePosition": 1, "estimatedWait": 2, "status": "waiting"}}
    assert fetch(db_conn, "SELECT status, escalated_at IS NOT NULL FROM sessions WHERE session_id = 'session_123'") == [
        ("waiting", True)]


async def test_escalation_refusals(chat, db_conn):
    client, tenant = chat
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    sid = await new_session(client, tenant)
    url = f"/api/widgets/escalate/{tenant.site_key}/{sid}"
    await expect_error(await client.post(f"/api/widgets/escalate/{other.site_key}/{sid}"), 404, "SESSION_NOT_FOUND")
    await expect_error(await client.post(f"/api/widgets/escalate/widget-nope/{sid}"), 404, "WIDGET_NOT_FOUND")
    await expect_error(await client.post(f"/api/widgets/escalate/{tenant.site_key}/session_unknown1"), 404,
                       "SESSION_NOT_FOUND")
    await expect_error(await client.post(f"/api/widgets/escalate/{tenant.site_key}/bad!"), 400, "VALIDATION_ERROR")
    for body, field in ((b'{"reason": 5}', "reason"), (b'{"reason": "a\\u0000b"}', "reason"),
                        (b'{"reason": "' + b"r" * 256 + b'"}', "reason"), (b"[1]", "body"), (b"{", "body"),
                        (b'{"customer_frustrated": "yes"}', "customer_frustrated")):
        await expect_error(await client.post(url, data=body, headers={"Content-Type": "application/json"}),
                           400, "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT status FROM sessions WHERE session_id = %s", sid) == [("active",)]
    # Escalating twice keeps the first place and time.
    first = (await expect(await client.post(url, json={"reason": "customer_requested_human"}), 200))["data"]
    at = fetch(db_conn, "SELECT escalated_at FROM sessions WHERE session_id = %s", sid)
    again = (await expect(await client.post(url), 200))["data"]
    assert again["queuePosition"] == first["queuePosition"] == 1
    assert fetch(db_conn, "SELECT escalated_at FROM sessions WHERE session_id = %s", sid) == at
    # A closed chat cannot be escalated.
    admin = {"id": tenant.admin_id, "name": "Admin", "role": credentials.ADMIN}
    await client.app[SUPPORT].close(tenant.id, sid, admin)
    await expect_error(await client.post(url), 409, "CONFLICT")


async def test_queue_position_and_stats(chat):
    client, tenant = chat
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    waiting, chatting = await new_session(client, tenant), await new_session(client, tenant)
    await expect(await client.post(f"/api/widgets/escalate/{tenant.site_key}/{waiting}"), 200)
    got = await expect(await client.get(f"/api/widgets/queue-position/{tenant.site_key}/{waiting}"), 200)
    assert got == {"success": True, "data": {"position": 1, "estimatedWait": 2, "status": "waiting"}}
    got = await expect(await client.get(f"/api/widgets/queue-position/{tenant.site_key}/{chatting}"), 200)
    assert got["data"] == {"position": 0, "estimatedWait": 0, "status": "active"}
    await expect_error(await client.get(f"/api/widgets/queue-position/{other.site_key}/{waiting}"), 404,
                       "SESSION_NOT_FOUND")

    stats_url = f"/api/widgets/{tenant.site_key}/queue-stats"
    stats = await expect(await client.get(stats_url, headers=tenant.bearer(tenant.admin_token)), 200)
    assert stats["data"]["stats"] == {"waitingSessions": 1, "availableAgents": 0, "averageWaitTime": "2.0 minutes"}
    await expect_error(await client.get(stats_url), 401, "UNAUTHORIZED")
    await expect_error(await client.get(stats_url, headers=tenant.bearer()), 403, "FORBIDDEN")
    await expect_error(await client.get(stats_url, headers=other.bearer(other.secret_key)), 403, "FORBIDDEN")
    for path in ("/api/agents/waiting-sessions", "/api/agents/active-chats"):
        await expect_error(await client.get(path, headers=tenant.bearer()), 403, "FORBIDDEN")
        await expect_error(await client.get(path), 401, "UNAUTHORIZED")
    queue = await expect(await client.get("/api/agents/waiting-sessions", headers=tenant.bearer(tenant.secret_key)), 200)
    assert [(s["sessionId"], s["siteKey"], s["escalated"]) for s in queue["sessions"]] == [
        (waiting, tenant.site_key, True)]
    theirs = await expect(await client.get("/api/agents/waiting-sessions", headers=other.bearer(other.secret_key)), 200)
    assert theirs["sessions"] == []


async def test_active_chats_show_each_agent_their_own(chat):
    client, tenant = chat
    one, two = tenant.agents
    sids = [await new_session(client, tenant) for _ in range(2)]
    support = client.app[SUPPORT]
    for sid, agent in zip(sids, (one, two)):
        await support.accept(tenant.id, sid, {"id": agent["id"], "name": agent["name"], "role": credentials.AGENT})
    await expect(await client.post("/webchat/message", json={"tenantId": tenant.id, "sessionId": sids[0],
                                                               "message": "hi", **tenant.proof(sids[0])}, headers=tenant.bearer()), 200)
    mine = await expect(await client.get("/api/agents/active-chats", headers=tenant.bearer(one["token"])), 200)
    assert [(c["session_id"], c["messageCount"], c["site_key"]) for c in mine["data"]] == [(sids[0], 1, tenant.site_key)]
    assert mine["data"][0]["business_name"].startswith("Business ")
    everyone = await expect(await client.get("/api/agents/active-chats", headers=tenant.bearer(tenant.admin_token)), 200)
    assert sorted(c["session_id"] for c in everyone["data"]) == sorted(sids)


async def test_rating_over_rest_once_per_closed_chat(chat, db_conn):
    client, tenant = chat
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    sid = await new_session(client, tenant)
    body = {"sessionId": sid, "rating": 5, "comment": "Great help", **tenant.proof(sid)}
    await expect_error(await client.post("/api/chat/rating", json=body, headers=tenant.bearer()), 409, "CONFLICT")
    # With only the publishable key, the session's secret is the proof (SPEC section 12).
    await expect_error(await client.post("/api/chat/rating", json={**body, "sessionSecret": None},
                                         headers=tenant.bearer()), 403, "FORBIDDEN")
    agent = tenant.agents[0]
    staff = {"id": agent["id"], "name": agent["name"], "role": credentials.AGENT}
    await client.app[SUPPORT].accept(tenant.id, sid, staff)
    await client.app[SUPPORT].close(tenant.id, sid, staff)
    for bad, field in (({**body, "rating": 6}, "rating"), ({**body, "rating": "5"}, "rating"),
                       ({**body, "rating": 4.5}, "rating"), ({**body, "comment": "x\x00y"}, "comment"),
                       ({**body, "comment": "c" * 2001}, "comment"), ({"rating": 3}, "sessionId")):
        await expect_error(await client.post("/api/chat/rating", json=bad, headers=tenant.bearer()), 400,
                           "VALIDATION_ERROR", field)
    await expect_error(await client.post("/api/chat/rating", json=body), 401, "UNAUTHORIZED")
    await expect_error(await client.post("/api/chat/rating", json=body, headers=other.bearer()), 403, "FORBIDDEN")
    await expect_error(await client.post("/api/chat/rating", json={**body, "tenantId": other.id},
                                         headers=tenant.bearer()), 403, "FORBIDDEN")
    stranger = credentials.issue_token(client.app[SETTINGS], subject="session_other1", role=credentials.VISITOR,
                                       tenant_id=tenant.id, sid="session_other1")
    await expect_error(await client.post("/api/chat/rating", json=body, headers=tenant.bearer(stranger)), 403,
                       "FORBIDDEN")
    assert fetch(db_conn, "SELECT count(*) FROM ratings WHERE session_id = %s", sid) == [(0,)]

    token = credentials.issue_token(client.app[SETTINGS], subject=sid, role=credentials.VISITOR, tenant_id=tenant.id,
                                    sid=sid)
    saved = await expect(await client.post("/api/chat/rating", json=body, headers=tenant.bearer(token)), 201)
    assert saved["data"]["rating"] == 5 and saved["data"]["comment"] == "Great help"
    await expect_error(await client.post("/api/chat/rating", json={**body, "rating": 1}, headers=tenant.bearer()),
                       409, "CONFLICT")
    assert fetch(db_conn, "SELECT rating, comment, agent_id FROM ratings WHERE session_id = %s", sid) == [
        (5, "Great help", agent["id"])]


async def test_staff_frames_refuse_what_they_may_not_do(chat):
    client, tenant = chat
    one, two = tenant.agents
    sid = await new_session(client, tenant)
    ws_one = await client.ws_connect(f"/ws/agent/{one['id']}?token={one['token']}")
    ws_two = await client.ws_connect(f"/ws/agent/{two['id']}?token={two['token']}")
    for ws in (ws_one, ws_two):
        await recv(ws)
    await ws_one.send_json({"type": "return_to_ai", "sessionId": sid})
    assert (await until(ws_one, "error"))["code"] == "CONFLICT"  # the assistant has it already
    await ws_one.send_json({"type": "accept_chat", "sessionId": sid})
    await until(ws_one, "chat_accepted")
    for frame_type in ("return_to_ai", "close_chat"):
        await ws_two.send_json({"type": frame_type, "sessionId": sid})
        error = await until(ws_two, "error")
        assert (error["code"], error["frameType"]) == ("FORBIDDEN", frame_type)
    await ws_two.send_json({"type": "close_chat", "sessionId": "session_of_nobody"})
    assert (await until(ws_two, "error"))["code"] == "SESSION_NOT_FOUND"
    await ws_two.send_json({"type": "close_chat"})
    assert (await until(ws_two, "error"))["code"] == "VALIDATION_ERROR"
    await ws_one.send_json({"type": "close_chat", "sessionId": sid})
    assert (await until(ws_one, "chat_closed"))["sessionId"] == sid
    await ws_one.send_json({"type": "close_chat", "sessionId": sid})
    assert (await until(ws_one, "error"))["code"] == "CONFLICT"
    for ws in (ws_one, ws_two):
        await ws.close()


async def test_visitor_frames_escalate_and_rate(chat):
    client, tenant = chat
    sid = session_id()
    ws = await client.ws_connect(f"/ws/{sid}")
    await recv(ws)
    await ws.send_json({"type": "escalate", "siteKey": tenant.site_key})  # a tokenless socket's first frame joins
    update = await until(ws, "queue_update")
    assert (update["position"], update["estimatedWait"]) == (1, 2)
    await ws.send_json({"type": "rating", "rating": 5})
    assert (await until(ws, "error"))["code"] == "CONFLICT"  # not closed yet
    await ws.send_json({"type": "rating", "rating": 0})
    error = await until(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and "rating" in error["errors"]
    await ws.close()


async def test_each_workflow_event_is_emitted_once(chat):
    client, tenant = chat
    support = client.app[SUPPORT]
    seen = []

    async def listener(event, tenant_id, data):
        seen.append((event, tenant_id, data["sessionId"]))

    support.events.append(listener)
    sid = await new_session(client, tenant)
    agent = tenant.agents[0]
    staff = {"id": agent["id"], "name": agent["name"], "role": credentials.AGENT}
    await expect(await client.post(f"/api/widgets/escalate/{tenant.site_key}/{sid}"), 200)
    await expect(await client.post(f"/api/widgets/escalate/{tenant.site_key}/{sid}"), 200)  # no second event
    await support.accept(tenant.id, sid, staff)
    await support.close(tenant.id, sid, staff)
    await support.rate(tenant.id, sid, 3, None)
    assert seen == [(event, tenant.id, sid) for event in ("conversation.escalated", "conversation.assigned",
                                                         "conversation.closed", "rating.created")]


async def test_an_agents_chat_limit_is_set_by_the_admin(client, db_conn):
    admin = await register_admin(client)
    agent = await create_agent(client, admin, max_concurrent_chats=2)
    assert agent.row["max_concurrent_chats"] == 2
    changed = await expect(await client.put(f"/api/agents/{agent.id}", json={"max_concurrent_chats": 1},
                                            headers=admin.headers), 200)
    assert changed["data"]["agent"]["max_concurrent_chats"] == 1
    await expect_error(await client.put(f"/api/agents/{agent.id}", json={"max_concurrent_chats": 101},
                                        headers=admin.headers), 400, "VALIDATION_ERROR", "max_concurrent_chats")
    assert fetch(db_conn, "SELECT max_concurrent_chats FROM agents WHERE id = %s", agent.id) == [(1,)]
    default = await create_agent(client, admin)
    assert default.row["max_concurrent_chats"] == 5
