"""The widget backend's HTTP routes: tokens, sessions, messages, history, online users, agent history."""
from __future__ import annotations

import io

import jwt
import pytest

from amoiq_chat import credentials
from amoiq_chat.appkeys import DB, PUBLIC_WIDGETS, SETTINGS
from amoiq_chat.jsonutil import iso
from amoiq_chat.services import messages
from amoiq_chat.store import messages as stored_messages
from amoiq_chat.services.widgets import PUBLIC_TTL

from .chat_fixtures import make_tenant, recv, session_id, until


@pytest.fixture
async def chat(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=1)
    return client, tenant


async def send(client, tenant, **body):
    """POST /webchat/message with the pk key, resuming with the secret of a session this test started."""
    payload = {"tenantId": tenant.id, "fingerprint": "fp-1", **tenant.proof(body.get("sessionId")), **body}
    resp = await client.post("/webchat/message", json=payload, headers=tenant.bearer())
    if resp.status == 200:
        tenant.keep_secret(payload["sessionId"], await resp.json())
    return resp


async def test_anonymous_token_binds_a_new_session(chat, db_conn):
    client, tenant = chat
    resp = await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id}, headers=tenant.bearer())
    assert resp.status == 200
    body = await resp.json()
    assert body["expiresIn"] == 3600 and body["sessionId"]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["role"] == "visitor" and claims["sid"] == body["sessionId"] == claims["sub"]
    assert claims["tenant"] == tenant.id and "uid" not in claims
    with db_conn.cursor() as cur:
        cur.execute("SELECT tenant_id FROM sessions WHERE session_id = %s", (body["sessionId"],))
        assert cur.fetchone() == (tenant.id,)


async def test_anonymous_token_refuses_bad_input(chat):
    client, tenant = chat
    resp = await client.post("/api/chat/anonymous-token", json={}, headers=tenant.bearer())
    assert resp.status == 400 and (await resp.json())["code"] == "MISSING_TENANT_ID"
    resp = await client.post("/api/chat/anonymous-token", json={"tenantId": "tenant-other"}, headers=tenant.bearer())
    assert resp.status == 403
    resp = await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id, "sessionId": "short"},
                             headers=tenant.bearer())
    assert resp.status == 400 and "sessionId" in (await resp.json())["errors"]
    resp = await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id})
    assert resp.status == 401
    resp = await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id}, headers=tenant.bearer(tenant.admin_token))
    assert resp.status == 403


async def test_identity_verification_requires_a_valid_user_hash(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], identity_verification=True)
    with db_conn.cursor() as cur:
        cur.execute("SELECT identity_secret FROM tenants WHERE id = %s", (tenant.id,))
        secret = cur.fetchone()[0]
    body = {"tenantId": tenant.id, "userId": "user-42"}
    resp = await client.post("/api/chat/anonymous-token", json=body, headers=tenant.bearer())
    assert resp.status == 401 and "userHash" in (await resp.json())["errors"]
    resp = await client.post("/api/chat/anonymous-token", json={**body, "userHash": "0" * 64}, headers=tenant.bearer())
    assert resp.status == 401
    resp = await client.post("/api/chat/anonymous-token", json={**body, "userHash": credentials.user_hash(secret, "user-42")},
                             headers=tenant.bearer())
    assert resp.status == 200
    claims = jwt.decode((await resp.json())["token"], options={"verify_signature": False})
    assert claims["uid"] == "user-42"
    resp = await send(client, tenant, text="hi", sessionId=session_id(), userId="user-42")
    assert resp.status == 401
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM messages WHERE tenant_id = %s", (tenant.id,))
        assert cur.fetchone() == (0,)


async def test_session_route_creates_and_resumes(chat):
    client, tenant = chat
    sid = session_id()
    body = {"tenantId": tenant.id, "siteKey": tenant.site_key, "sessionId": sid, "fingerprint": "fp"}
    resp = await client.post("/api/chat/session", json=body, headers=tenant.bearer())
    assert resp.status == 200
    created = await resp.json()
    assert created == {"success": True, "sessionId": sid, "tenantId": tenant.id, "siteKey": tenant.site_key,
                       "status": "active", "aiMode": True, "sessionSecret": created["sessionSecret"]}
    resp = await client.post("/api/chat/session", json={**body, "sessionSecret": created["sessionSecret"]},
                             headers=tenant.bearer())
    resumed = await resp.json()
    assert resumed["sessionId"] == sid and "sessionSecret" not in resumed
    resp = await client.post("/api/chat/session", json={**body, "siteKey": "widget-nope"}, headers=tenant.bearer())
    assert resp.status == 404 and (await resp.json())["code"] == "WIDGET_NOT_FOUND"


async def test_webchat_message_is_stored_once_per_client_message_id(chat, db_conn):
    client, tenant = chat
    with db_conn.cursor() as cur:  # an endpoint wanting message.created: each message gets its outbox row
        cur.execute("INSERT INTO webhooks (tenant_id, url, secret) VALUES (%s, 'https://hooks.example.com/in', 'whsec_x')",
                    (tenant.id,))
    sid = session_id()
    first = await send(client, tenant, text="Hello, I need help", sessionId=sid, clientMessageId="m-1",
                       domain="example.com", url="https://example.com/page")
    assert first.status == 200
    body = await first.json()
    assert body["success"] is True and body["sessionId"] == sid and body["seq"] == 1
    again = await (await send(client, tenant, text="Hello, I need help", sessionId=sid, clientMessageId="m-1")).json()
    assert again["messageId"] == body["messageId"] and again["seq"] == 1 and again["duplicate"] is True
    also = await client.post("/api/chat/messages", json={"tenantId": tenant.id, "sessionId": sid, "text": "second",
                                                         **tenant.proof(sid)}, headers=tenant.bearer())
    assert (await also.json())["seq"] == 2
    with db_conn.cursor() as cur:
        cur.execute("SELECT seq, message, metadata->>'domain' FROM messages WHERE session_id = %s ORDER BY seq", (sid,))
        assert cur.fetchall() == [(1, "Hello, I need help", "example.com"), (2, "second", None)]
        cur.execute("SELECT o.event, o.payload, o.tenant_id FROM webhook_outbox o"  # (the webhook worker may have
                    " JOIN messages m ON m.id = o.message_id WHERE m.session_id = %s ORDER BY m.seq", (sid,))  # sent it)
        assert cur.fetchall() == [("message.created", None, tenant.id)] * 2
    async with client.app[DB].acquire() as conn:  # the webhook body is made from the stored message
        (stored,) = await stored_messages.find_by_ids(conn, [body["messageId"]])
    assert messages.webhook_payload(stored) == {
        "event": "message.created", "timestamp": iso(stored["created_at"]),
        "data": {"messageId": body["messageId"], "sessionId": sid, "userId": None, "tenantId": tenant.id,
                 "text": "Hello, I need help", "senderType": "user"}}


async def test_a_later_message_adds_what_it_brings_to_its_session(chat, db_conn):
    client, tenant = chat
    sid = session_id()

    def stored_session():
        with db_conn.cursor() as cur:
            cur.execute("SELECT site_key, fingerprint, user_id, visitor_name, visitor_email, visitor_info, last_seq"
                        " FROM sessions WHERE session_id = %s", (sid,))
            return cur.fetchone()

    assert (await send(client, tenant, text="one", sessionId=sid)).status == 200
    assert stored_session() == (None, "fp-1", None, None, None, {}, 1)
    assert (await send(client, tenant, text="two", sessionId=sid, fingerprint="fp-2", siteKey=tenant.site_key,
                       userId="user-1", userInfo={"name": "Ann", "phone": "555"})).status == 200
    assert stored_session() == (tenant.site_key, "fp-2", "user-1", "Ann", None, {"name": "Ann", "phone": "555"}, 2)
    assert (await send(client, tenant, text="three", sessionId=sid, fingerprint="fp-2", userId="user-1",
                       userInfo={"phone": "555"})).status == 200  # nothing new: the session is as it was
    assert stored_session() == (tenant.site_key, "fp-2", "user-1", "Ann", None, {"name": "Ann", "phone": "555"}, 3)
    assert (await send(client, tenant, text="four", sessionId=sid, fingerprint="fp-2", userId="user-1",
                       userInfo={"email": "ann@example.com"})).status == 200
    assert stored_session()[4:] == ("ann@example.com", {"name": "Ann", "phone": "555", "email": "ann@example.com"}, 4)


async def test_a_message_to_another_users_session_is_refused_and_changes_nothing(chat, db_conn):
    client, tenant = chat
    sid = session_id()
    assert (await send(client, tenant, text="mine", sessionId=sid, userId="user-1",
                       userInfo={"name": "Ann"})).status == 200
    resp = await send(client, tenant, text="not yours", sessionId=sid, userId="user-2", fingerprint="fp-evil",
                      userInfo={"name": "Mallory"})
    body = await resp.json()
    assert resp.status == 403 and body["code"] == "FORBIDDEN" and body["errors"] == {"userId": "does not match the session"}
    with db_conn.cursor() as cur:
        cur.execute("SELECT fingerprint, user_id, visitor_name, visitor_info, last_seq FROM sessions WHERE session_id = %s",
                    (sid,))
        assert cur.fetchone() == ("fp-1", "user-1", "Ann", {"name": "Ann"}, 1)
        cur.execute("SELECT count(*) FROM messages WHERE session_id = %s", (sid,))
        assert cur.fetchone() == (1,)


async def test_a_message_sees_a_widget_changed_elsewhere_within_seconds_and_a_deleted_one_as_404(chat, db_conn):
    client, tenant = chat
    now = [0.0]
    client.app[PUBLIC_WIDGETS].clock = lambda: now[0]  # the kept widget rows' clock
    assert (await send(client, tenant, text="hi", sessionId=session_id(), siteKey=tenant.site_key)).status == 200
    with db_conn.cursor() as cur:  # turned off through another process (here: in the database)
        cur.execute("UPDATE widget_configs SET is_active = false WHERE site_key = %s", (tenant.site_key,))
    now[0] += PUBLIC_TTL - 0.1
    assert (await send(client, tenant, text="still", sessionId=session_id(), siteKey=tenant.site_key)).status == 200
    now[0] += 0.1
    resp = await send(client, tenant, text="off now", sessionId=session_id(), siteKey=tenant.site_key)
    assert resp.status == 404 and (await resp.json())["code"] == "WIDGET_NOT_FOUND"
    with db_conn.cursor() as cur:  # on again, read and kept; then deleted elsewhere, with its sessions
        cur.execute("UPDATE widget_configs SET is_active = true WHERE site_key = %s", (tenant.site_key,))
    now[0] += PUBLIC_TTL  # the row read as off is kept as long
    assert (await send(client, tenant, text="on", sessionId=session_id(), siteKey=tenant.site_key)).status == 200
    with db_conn.cursor() as cur:
        cur.execute("DELETE FROM widget_configs WHERE site_key = %s", (tenant.site_key,))
    sid = session_id()
    resp = await send(client, tenant, text="gone", sessionId=sid, siteKey=tenant.site_key)  # the kept row says it exists
    assert resp.status == 404 and (await resp.json())["code"] == "WIDGET_NOT_FOUND"
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM sessions WHERE session_id = %s", (sid,))
        assert cur.fetchone() == (0,)


@pytest.mark.parametrize("body, field", [
    ({"sessionId": "session_12345678"}, "text"),
    ({"text": "   ", "sessionId": "session_12345678"}, "text"),
    ({"text": 5, "sessionId": "session_12345678"}, "text"),
    ({"text": "x" * 10001, "sessionId": "session_12345678"}, "text"),
    ({"text": "hi", "sessionId": "bad id!"}, "sessionId"),
    ({"text": "hi", "sessionId": "session_12345678", "userInfo": "me"}, "userInfo"),
    ({"text": "hi", "sessionId": "session_12345678", "clientMessageId": "c" * 129}, "clientMessageId"),
])
async def test_webchat_message_names_the_bad_field(chat, db_conn, body, field):
    client, tenant = chat
    resp = await send(client, tenant, **body)
    assert resp.status == 400
    envelope = await resp.json()
    assert envelope["code"] == "VALIDATION_ERROR"
    assert field in {name.split(".")[0] for name in envelope["errors"]}
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM messages WHERE tenant_id = %s", (tenant.id,))
        assert cur.fetchone() == (0,)


async def test_webchat_message_refuses_other_tenants_and_oversized_bodies(chat, aiohttp_client, make_app):
    client, tenant = chat
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    sid = session_id()
    assert (await send(client, tenant, text="mine", sessionId=sid)).status == 200
    resp = await client.post("/webchat/message", json={"tenantId": other.id, "sessionId": sid, "text": "hijack"},
                             headers=other.bearer())
    assert resp.status == 403
    resp = await send(client, tenant, text="hi", sessionId=session_id(), siteId=other.site_key)
    assert resp.status == 403
    as_json = {**tenant.bearer(), "Content-Type": "application/json"}
    resp = await client.post("/webchat/message", data=io.BytesIO(b"{" + b" " * 2_000_000 + b"}"), headers=as_json)
    assert resp.status == 413 and (await resp.json())["code"] == "PAYLOAD_TOO_LARGE"
    resp = await client.post("/webchat/message", data=b"not json", headers=as_json)
    assert resp.status == 400


async def test_history_oldest_first_with_pagination(chat):
    client, tenant = chat
    sid = session_id()
    for n in range(5):
        await send(client, tenant, text=f"m{n}", sessionId=sid)
    token_resp = await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id, "sessionId": sid,
                                                                      **tenant.proof(sid)}, headers=tenant.bearer())
    token = (await token_resp.json())["token"]
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "sessionId": sid, "limit": "3"},
                            headers=tenant.bearer(token))
    page = await resp.json()
    assert [m["text"] for m in page["messages"]] == ["m2", "m3", "m4"] and page["hasMore"] is True
    assert page["messages"][0]["sender"] == "user" and page["messages"][0]["timestamp"].endswith("Z")
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "sessionId": sid,
                                                         "before": page["nextBefore"]}, headers=tenant.bearer(token))
    older = await resp.json()
    assert [m["text"] for m in older["messages"]] == ["m0", "m1"] and older["hasMore"] is False
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "sessionId": session_id()},
                            headers=tenant.bearer(token))
    assert resp.status == 403
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "sessionId": sid, "limit": "0"},
                            headers=tenant.bearer(token))
    assert resp.status == 400 and "limit" in (await resp.json())["errors"]
    resp = await client.get("/api/chat/messages", params={"sessionId": sid}, headers=tenant.bearer(token))
    assert resp.status == 400 and (await resp.json())["code"] == "MISSING_TENANT_ID"


async def test_logged_in_history_spans_sessions(chat):
    client, tenant = chat
    first, second, stranger = session_id(), session_id(), session_id()
    await send(client, tenant, text="on the laptop", sessionId=first, userId="user-7")
    await send(client, tenant, text="on the phone", sessionId=second, userId="user-7")
    await send(client, tenant, text="someone else", sessionId=stranger, userId="user-8")
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "userId": "user-7"},
                            headers=tenant.bearer(tenant.secret_key))
    messages = (await resp.json())["messages"]
    assert [(m["text"], m["userId"]) for m in messages] == [("on the laptop", "user-7"), ("on the phone", "user-7")]
    # Identity verification is off: user-7 is only claimed, so its token reads its own session only
    # (a verified user reads across sessions: tests/test_session_ownership.py).
    token = (await (await client.post("/api/chat/anonymous-token", json={"tenantId": tenant.id, "userId": "user-7",
                                                                          "sessionId": first, **tenant.proof(first)},
                                      headers=tenant.bearer())).json())["token"]
    for user in ("user-7", "user-8"):
        resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "userId": user},
                                headers=tenant.bearer(token))
        assert resp.status == 403
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "sessionId": first},
                            headers=tenant.bearer(token))
    assert [m["text"] for m in (await resp.json())["messages"]] == ["on the laptop"]


async def test_agent_history_view_in_the_004_shape(chat):
    client, tenant = chat
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    sid = session_id()
    await send(client, tenant, text="I need help with my order", sessionId=sid,
               userInfo={"name": "John Doe", "email": "john@example.com"})
    resp = await client.get(f"/api/widgets/sessions/{sid}/messages", headers=tenant.bearer(tenant.agents[0]["token"]))
    body = await resp.json()
    assert resp.status == 200 and body["success"] is True
    assert [(m["text"], m["sender"], m["isAI"]) for m in body["messages"]] == [("I need help with my order", "customer", False)]
    assert body["customerInfo"]["name"] == "John Doe" and body["customerInfo"]["email"] == "john@example.com"
    resp = await client.get(f"/api/widgets/sessions/{sid}/messages", headers=other.bearer(other.admin_token))
    assert resp.status == 403
    resp = await client.get(f"/api/widgets/sessions/{session_id()}/messages", headers=tenant.bearer(tenant.admin_token))
    assert resp.status == 404 and (await resp.json())["code"] == "SESSION_NOT_FOUND"
    resp = await client.get(f"/api/widgets/sessions/{sid}/messages", headers=tenant.bearer())
    assert resp.status == 403


async def test_online_users_needs_staff_of_that_tenant(chat):
    client, tenant = chat
    sid = session_id()
    ws = await client.ws_connect(f"/ws/{sid}", headers={"Origin": "https://shop.example.com"})
    await recv(ws)
    await ws.send_json({"type": "join", "siteKey": tenant.site_key, "url": "https://shop.example.com/cart"})
    await until(ws, "connection_status")
    resp = await client.get("/api/chat/online-users", params={"tenantId": tenant.id},
                            headers={**tenant.bearer(tenant.admin_token), "X-Tenant-ID": tenant.id})
    users = (await resp.json())["users"]
    assert [(u["userId"], u["sessionId"], u["domain"], u["url"]) for u in users] == \
        [(None, sid, "shop.example.com", "https://shop.example.com/cart")]
    resp = await client.get("/api/chat/online-users", params={"tenantId": "tenant-other"},
                            headers=tenant.bearer(tenant.admin_token))
    assert resp.status == 403
    resp = await client.get("/api/chat/online-users", params={"tenantId": tenant.id}, headers=tenant.bearer())
    assert resp.status == 403
    await ws.close()
