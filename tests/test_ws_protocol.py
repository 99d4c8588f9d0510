"""The raw WebSocket protocol on one process: handshakes, bad frames, limits, origins, idempotency, typing."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from amoiq_chat import credentials
from amoiq_chat.errors import ValidationError
from amoiq_chat.http import validate
from amoiq_chat.appkeys import DB, SETTINGS
from amoiq_chat.visitor_schemas import MessageBody
from amoiq_chat.ws.frames import plain_message
from amoiq_chat.settings import RateLimit
from amoiq_chat.ws.registry import Registry

from .chat_fixtures import closed_with, collect, make_tenant, nothing_more, recv, session_id, until


@pytest.fixture
async def chat(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(rate_limit_ws=RateLimit(100, 1)))
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=2)
    return client, tenant


async def visitor(client, tenant, sid=None, **headers):
    sid = sid or session_id()
    ws = await client.ws_connect(f"/ws/{sid}", headers=headers)
    assert (await recv(ws))["type"] == "connection_status"
    return ws, sid


async def staff(client, member_id, token):
    ws = await client.ws_connect(f"/ws/agent/{member_id}?token={token}")
    assert (await recv(ws))["type"] == "connection_status"
    return ws


def count(db_conn, sid):
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM messages WHERE session_id = %s", (sid,))
        return cur.fetchone()[0]


async def test_seed_agent_example_gets_waiting_sessions(chat, db_conn):
    client, tenant = chat
    sid = session_id()
    with db_conn.cursor() as cur:
        cur.execute("INSERT INTO sessions (session_id, tenant_id, site_key, status, escalated_at, visitor_name)"
                    " VALUES (%s, %s, %s, 'waiting', now(), 'Jane')", (sid, tenant.id, tenant.site_key))
    agent = tenant.agents[0]
    ws = await client.ws_connect(f"/ws/agent/{agent['id']}?token={agent['token']}")
    status = await recv(ws)
    assert status == {**status, "type": "connection_status", "status": "connected", "agentId": agent["id"]}
    await ws.send_json({"type": "get_waiting_sessions", "agentId": agent["id"], "timestamp": "2024-01-15T10:30:00Z"})
    waiting = await until(ws, "waiting_sessions")
    assert [(s["sessionId"], s["siteKey"], s["visitorName"], s["escalated"]) for s in waiting["sessions"]] == \
        [(sid, tenant.site_key, "Jane", True)]
    # Accepting it takes it out of the queue: every staff socket gets the new queue.
    await ws.send_json({"type": "accept_chat", "sessionId": sid})
    got = await collect(ws, "chat_accepted", "waiting_sessions")
    assert got["waiting_sessions"]["sessions"] == []
    await ws.close()


async def test_visitor_socket_with_a_token_is_bound_at_once(chat, db_conn):
    client, tenant = chat
    resp = await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id}, headers=tenant.bearer())
    body = await resp.json()
    sid, token = body["sessionId"], body["token"]
    ws = await client.ws_connect(f"/ws/{sid}?token={token}")
    status = await recv(ws)
    assert status["joined"] is True and status["sessionId"] == sid
    await ws.send_json({"type": "message", "text": "bound", "clientMessageId": "b-1"})
    ack = await until(ws, "ack")
    assert ack["clientMessageId"] == "b-1" and ack["seq"] == 1
    assert count(db_conn, sid) == 1
    await ws.close()

    for url, status_code in [(f"/ws/{session_id()}?token={token}", 403),
                             (f"/ws/{sid}?token={tenant.agents[0]['token']}", 403),
                             (f"/ws/{sid}?token=forged", 401),
                             (f"/ws/{sid}?since=-1", 400),
                             ("/ws/bad!id", 400)]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(url)
        assert caught.value.status == status_code, url


async def test_agent_socket_checks_its_token(chat, db_conn):
    client, tenant = chat
    agent, other = tenant.agents
    visitor_token = credentials.issue_token(client.app[SETTINGS], subject="session_x1234567", role=credentials.VISITOR,
                                     tenant_id=tenant.id, sid="session_x1234567")
    for url, status_code in [(f"/ws/agent/{agent['id']}", 401),
                             (f"/ws/agent/{other['id']}?token={agent['token']}", 403),
                             (f"/ws/agent/{agent['id']}?token={visitor_token}", 403),
                             (f"/ws/agent/{agent['id']}?token=nope", 401)]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(url)
        assert caught.value.status == status_code, url
    # A password change ends the tokens issued before it, on sockets as on HTTP.
    with db_conn.cursor() as cur:
        cur.execute("UPDATE agents SET password_changed_at = now() + interval '5 seconds' WHERE id = %s", (other["id"],))
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(f"/ws/agent/{other['id']}?token={other['token']}")
    assert caught.value.status == 401
    with db_conn.cursor() as cur:
        cur.execute("UPDATE agents SET is_active = false WHERE id = %s", (agent["id"],))
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(f"/ws/agent/{agent['id']}?token={agent['token']}")
    assert caught.value.status == 401
    admin = await staff(client, tenant.admin_id, tenant.admin_token)
    await admin.close()


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(chat, db_conn):
    client, tenant = chat
    ws, sid = await visitor(client, tenant)
    cases = [
        ("not json", "VALIDATION_ERROR", "frame"),
        ("[1, 2]", "VALIDATION_ERROR", "frame"),
        ('{"type": "launch_rockets"}', "VALIDATION_ERROR", "type"),
        ('{"no": "type"}', "VALIDATION_ERROR", "type"),
        ('{"type": "message", "message": 5, "siteKey": "x"}', "VALIDATION_ERROR", "message"),
        ('{"type": "message", "message": "hi"}', "VALIDATION_ERROR", "siteKey"),
        ('{"type": "message", "message": "hi", "siteKey": "widget-unknown"}', "WIDGET_NOT_FOUND", None),
        ('{"type": "message", "siteKey": "%s"}' % tenant.site_key, "VALIDATION_ERROR", "text"),
    ]
    for raw, code, field in cases:
        await ws.send_str(raw)
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == code, raw
        if field:
            assert field in error["errors"], raw
    assert count(db_conn, sid) == 0
    await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": "still here"})
    assert (await until(ws, "ack"))["seq"] == 1
    await ws.close()


async def test_a_binary_frame_gets_an_error_and_closes_the_socket_with_1003(chat, db_conn):
    client, tenant = chat
    ws, sid = await visitor(client, tenant)
    await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": "before"})
    assert (await until(ws, "ack"))["seq"] == 1
    for _ in range(50):  # a flood: the first one ends the socket
        await ws.send_bytes(b"\x00\x01")
    error = await until(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and error["errors"] == {"frame": "binary"}
    assert await closed_with(ws) == 1003
    assert count(db_conn, sid) == 1


async def test_visitor_cannot_join_another_tenants_session(chat):
    client, tenant = chat
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    mine, sid = await visitor(client, tenant)
    await mine.send_json({"type": "message", "siteKey": tenant.site_key, "message": "mine"})
    await until(mine, "ack")
    thief, _ = await visitor(client, other, sid)
    await thief.send_json({"type": "message", "siteKey": other.site_key, "message": "let me in"})
    error = await recv(thief)
    assert error["type"] == "error" and error["code"] == "FORBIDDEN"
    await mine.send_json({"type": "message", "message": "private"})
    await until(mine, "ack")
    assert [f for f in await nothing_more(thief) if f["type"] != "error"] == []
    await mine.close()
    await thief.close()


async def test_a_join_sees_a_widget_deleted_elsewhere_as_not_found(chat, db_conn):
    client, tenant = chat
    first, _ = await visitor(client, tenant)
    await first.send_json({"type": "message", "siteKey": tenant.site_key, "message": "hi"})
    await until(first, "ack")  # the widget's row is now kept by this process
    with db_conn.cursor() as cur:  # deleted through another process (here: in the database)
        cur.execute("DELETE FROM widget_configs WHERE site_key = %s", (tenant.site_key,))
    late, sid = await visitor(client, tenant)
    await late.send_json({"type": "message", "siteKey": tenant.site_key, "message": "anyone?"})
    error = await until(late, "error")
    assert error["code"] == "WIDGET_NOT_FOUND"
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM sessions WHERE session_id = %s", (sid,))
        assert cur.fetchone() == (0,)
    await first.close()
    await late.close()


async def test_frames_over_the_cap_close_with_1009(chat):
    client, tenant = chat
    ws, _ = await visitor(client, tenant)
    await ws.send_str('{"type": "message", "message": "' + "x" * 70000 + '"}')
    assert await closed_with(ws) == 1009


async def test_rate_limit_refuses_a_burst_and_closes_only_sustained_abuse_with_1008(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app(rate_limit_ws=RateLimit(3, 1)))
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    ws, sid = await visitor(client, tenant)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(5):  # one burst: three stored, two refused, and the socket stays
        await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": f"m{n}", "clientMessageId": f"r{n}"})
    frames = []
    while sum(f["type"] in ("ack", "error") for f in frames) < 5:
        frames.append(await recv(ws))
    errors = [f for f in frames if f["type"] == "error"]
    assert [e["code"] for e in errors] == ["RATE_LIMIT_EXCEEDED"] * 2
    assert sorted(f["clientMessageId"] for f in frames if f["type"] == "ack") == ["r0", "r1", "r2"]
    assert count(db_conn, sid) == 3
    await nothing_more(ws)  # the meta_message_created of each stored one came with it
    for n in range(4):  # pings count too: past the rate they go unanswered
        await ws.ping(b"p%d" % n)
    await ws.send_json({"type": "typing", "isTyping": True})
    assert (await recv(ws))["code"] == "RATE_LIMIT_EXCEEDED"
    assert loop.time() - started < 1  # all of that within the first window
    # A burst in the very next window makes two windows in a row over the rate: what is due arrives, then 1008.
    await asyncio.sleep(started + 1.2 - loop.time())  # the server's first window is over (it began after `started`)
    for n in range(5):
        await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": f"a{n}", "clientMessageId": f"a{n}"})
    due = []
    while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
        due.append(json.loads(msg.data))
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
    assert sorted(f["clientMessageId"] for f in due if f["type"] == "ack") == ["a0", "a1", "a2"]
    assert due[-1]["code"] == "RATE_LIMIT_EXCEEDED"
    assert count(db_conn, sid) == 6


async def test_origin_must_match_the_widgets_allowed_domains(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], allowed_domains=["*.example.com"])
    ws, _ = await visitor(client, tenant, Origin="https://evil.test")
    await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": "hi"})
    error = await recv(ws)
    assert error["code"] == "FORBIDDEN" and "origin" in error["errors"]
    assert await closed_with(ws) == 1008

    ws, _ = await visitor(client, tenant, Origin="https://shop.example.com")
    await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": "hi"})
    assert (await until(ws, "ack"))["seq"] == 1
    await ws.close()

    resp = await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id, "siteKey": tenant.site_key},
                             headers=tenant.bearer())
    body = await resp.json()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(f"/ws/{body['sessionId']}?token={body['token']}", headers={"Origin": "https://evil.test"})
    assert caught.value.status == 403


async def test_repeated_client_message_id_is_acked_again_and_stored_once(chat, db_conn):
    client, tenant = chat
    ws, sid = await visitor(client, tenant)
    frame = {"type": "message", "siteKey": tenant.site_key, "message": "once", "clientMessageId": "same"}
    await ws.send_json(frame)
    first = await collect(ws, "ack", "meta_message_created")
    await ws.send_json(frame)
    second = await until(ws, "ack")
    assert (second["id"], second["seq"]) == (first["ack"]["id"], first["ack"]["seq"]) and second["duplicate"] is True
    assert [f for f in await nothing_more(ws) if f["type"] == "meta_message_created"] == []
    assert count(db_conn, sid) == 1
    await ws.close()


async def test_typing_accept_and_every_socket_of_the_agent(chat):
    client, tenant = chat
    agent = tenant.agents[0]
    ws, sid = await visitor(client, tenant)
    await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": "hello"})
    await until(ws, "ack")
    desk, laptop = await staff(client, agent["id"], agent["token"]), await staff(client, agent["id"], agent["token"])
    await desk.send_json({"type": "send_message", "sessionId": sid, "text": "too early"})
    assert (await until(desk, "error"))["code"] == "FORBIDDEN"
    await desk.send_json({"type": "accept_chat", "sessionId": sid})
    for socket in (desk, laptop):
        accepted = await until(socket, "chat_accepted")
        assert [m["text"] for m in accepted["messages"]] == ["hello"]
    await ws.send_json({"type": "typing", "isTyping": True})
    for socket in (desk, laptop):
        typing = await until(socket, "typing")
        assert typing["sessionId"] == sid and typing["isTyping"] is True and typing["sender"] == "customer"
    await laptop.send_json({"type": "typing", "sessionId": sid, "isTyping": True})
    assert (await until(ws, "typing"))["agentName"] == agent["name"]
    await ws.send_json({"type": "message", "message": "are you there?"})
    for socket in (desk, laptop):
        assert (await until(socket, "new_message"))["message"]["text"] == "are you there?"
    for socket in (ws, desk, laptop):
        await socket.close()


async def test_admin_follows_a_chat_with_sync(chat):
    client, tenant = chat
    ws, sid = await visitor(client, tenant)
    for n in range(3):
        await ws.send_json({"type": "message", "siteKey": tenant.site_key, "message": f"m{n}"})
        await until(ws, "ack")
    admin = await staff(client, tenant.admin_id, tenant.admin_token)
    await admin.send_json({"type": "sync", "sessionId": sid, "since": 1})
    replay = [await until(admin, "new_message") for _ in range(2)]
    assert [f["message"]["text"] for f in replay] == ["m1", "m2"]
    await ws.send_json({"type": "message", "message": "live"})
    assert (await until(admin, "new_message"))["message"]["text"] == "live"
    await admin.send_json({"type": "accept_chat", "sessionId": sid})
    assert (await until(admin, "error"))["code"] == "FORBIDDEN"
    await admin.send_json({"type": "sync", "since": 0})
    assert (await until(admin, "error"))["code"] == "VALIDATION_ERROR"
    for socket in (ws, admin):
        await socket.close()


async def test_agent_frames_about_other_tenants_or_unknown_sessions_are_refused(chat, db_conn):
    client, tenant = chat
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    theirs, their_sid = await visitor(client, other)
    await theirs.send_json({"type": "message", "siteKey": other.site_key, "message": "secret"})
    await until(theirs, "ack")
    agent = tenant.agents[0]
    ws = await staff(client, agent["id"], agent["token"])
    cases = [
        ({"type": "accept_chat", "sessionId": their_sid}, "FORBIDDEN"),
        ({"type": "accept_chat", "sessionId": session_id()}, "SESSION_NOT_FOUND"),
        ({"type": "accept_chat"}, "VALIDATION_ERROR"),
        ({"type": "accept_chat", "sessionId": 12345678}, "VALIDATION_ERROR"),
        ({"type": "send_message", "sessionId": their_sid, "text": "hi"}, "FORBIDDEN"),
        ({"type": "send_message", "sessionId": their_sid}, "VALIDATION_ERROR"),
        ({"type": "typing", "sessionId": their_sid, "isTyping": True}, "FORBIDDEN"),
        ({"type": "sync", "sessionId": their_sid, "since": 0}, "FORBIDDEN"),
        ({"type": "sync", "sessionId": their_sid, "since": "zero"}, "VALIDATION_ERROR"),
        ({"type": "get_online_users", "tenantId": other.id}, "FORBIDDEN"),
        ({"type": "message", "message": "wrong socket"}, "VALIDATION_ERROR"),
    ]
    for frame, code in cases:
        await ws.send_json(frame)
        error = await until(ws, "error")
        assert error["code"] == code, frame
    assert await nothing_more(ws) == []
    assert [f for f in await nothing_more(theirs) if f["type"] != "meta_message_created"] == []
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*), max(assigned_agent_id) FROM messages m JOIN sessions s USING (session_id)"
                    " WHERE s.session_id = %s", (their_sid,))
        assert cur.fetchone() == (1, None)
    # A visitor's frames naming another tenant or session are refused too.
    await theirs.send_json({"type": "message", "message": "x", "tenantId": tenant.id})
    assert (await until(theirs, "error"))["code"] == "FORBIDDEN"
    await theirs.send_json({"type": "message", "message": "x", "sessionId": session_id()})
    assert (await until(theirs, "error"))["code"] == "FORBIDDEN"
    for socket in (ws, theirs):
        await socket.close()


async def test_socket_join_checks_user_hash_when_identity_verification_is_on(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], identity_verification=True)
    with db_conn.cursor() as cur:
        cur.execute("SELECT identity_secret FROM tenants WHERE id = %s", (tenant.id,))
        secret = cur.fetchone()[0]
    ws, sid = await visitor(client, tenant)
    frame = {"type": "message", "siteKey": tenant.site_key, "message": "it's me", "userId": "user-1"}
    await ws.send_json(frame)
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == "UNAUTHORIZED" and "userHash" in error["errors"]
    await ws.send_json({**frame, "userHash": "f" * 64})
    assert (await recv(ws))["code"] == "UNAUTHORIZED"
    assert count(db_conn, sid) == 0
    await ws.send_json({**frame, "userHash": credentials.user_hash(secret, "user-1")})
    ack = await until(ws, "ack")
    with db_conn.cursor() as cur:
        cur.execute("SELECT m.user_id, s.user_id FROM messages m JOIN sessions s USING (session_id) WHERE m.id = %s",
                    (ack["id"],))
        assert cur.fetchone() == ("user-1", "user-1")
    await ws.close()


@pytest.mark.parametrize("frame", [
    {"type": "message", "message": "hi", "clientMessageId": "c1"},
    {"type": "message", "text": "hi"},
    {"type": "message", "text": "  ", "message": "hi"},
    {"type": "message", "text": "", "message": "hi", "clientMessageId": None},
    {"type": "message", "message": "hi", "sessionId": "session_12345678"},
    {"type": "message", "message": "hi", "sessionId": "bad id!"},
    {"type": "message", "message": "hi", "sessionId": "short"},
    {"type": "message", "message": "hi", "sessionId": "session_12345678\n"},
    {"type": "message", "message": "   "},
    {"type": "message", "message": 5},
    {"type": "message", "message": None},
    {"type": "message", "message": "x" * 10001},
    {"type": "message", "message": "x" * 10000, "clientMessageId": "c" * 128},
    {"type": "message", "message": "hi", "clientMessageId": ""},
    {"type": "message", "message": "hi", "clientMessageId": "c" * 129},
    {"type": "message", "message": "hi", "clientMessageId": 7},
    {"type": "message", "message": "hi", "domain": "example.com"},
    {"type": "message"},
])
def test_the_plain_message_shortcut_agrees_with_the_schema(frame):
    """plain_message gives MessageBody's result, or None and the schema decides (same result or its error)."""
    fast = plain_message(frame)
    registry = Registry("test")
    try:
        slow = validate(registry.schema_for("message", MessageBody(), frame), frame)
    except ValidationError:
        slow = None
    assert fast is None or fast == slow
    shortcut = set(frame) <= {"type", "text", "message", "clientMessageId", "sessionId"} and slow is not None \
        and not frame.get("sessionId", "").endswith("\n")
    assert (fast is not None) == shortcut  # the shapes a joined widget sends do take it
