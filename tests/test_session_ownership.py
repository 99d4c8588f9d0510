"""Sessions belong to whoever started them (SPEC section 12, issue 22 item 3): the resume secret,
tokens only with proof, `uid` only for a verified identity, and `connection_status` `lastSeq`."""
from __future__ import annotations

import jwt
import pytest

from amoiq_chat import credentials
from amoiq_chat.appkeys import DB, PUBLIC_WIDGETS, REDIS, SETTINGS, WRITER
from amoiq_chat.errors import Forbidden
from amoiq_chat.services import visitors
from amoiq_chat.services.batches import Draft

from .chat_fixtures import make_tenant, nothing_more, recv, session_id, until


@pytest.fixture
async def chat(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    return client, tenant


async def post(client, tenant, path, body, token=None):
    """(status, answer) of a POST with the publishable key (or `token`)."""
    resp = await client.post(path, json={"tenantId": tenant.id, **body}, headers=tenant.bearer(token))
    return resp.status, await resp.json()


def row(db_conn, sql, *params):
    with db_conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


async def started(client, tenant, sid):
    """A session started by its widget, as the seed does: its first message. Returns its secret."""
    status, answer = await post(client, tenant, "/webchat/message",
                                {"sessionId": sid, "siteKey": tenant.site_key, "text": "mine", "fingerprint": "fp-1"})
    assert status == 200 and answer["seq"] == 1
    return answer["sessionSecret"]


async def test_whoever_creates_a_session_gets_its_secret_once_and_only_its_hash_is_kept(chat, db_conn):
    client, tenant = chat
    for path, extra in [("/webchat/message", {"text": "hi"}), ("/api/chat/messages", {"message": "hi"}),
                        ("/api/chat/session", {"siteKey": tenant.site_key}), ("/api/chat/anonymous-token", {})]:
        sid = session_id()
        status, answer = await post(client, tenant, path, {"sessionId": sid, **extra})
        assert status == 200 and len(answer["sessionSecret"]) >= 40, path
        stored = row(db_conn, "SELECT secret_hash FROM sessions WHERE session_id = %s", sid)[0]
        assert stored == credentials.hash_api_key(answer["sessionSecret"]) and answer["sessionSecret"] not in stored
        status, again = await post(client, tenant, path, {"sessionId": sid, "sessionSecret": answer["sessionSecret"],
                                                          **extra})
        assert status == 200 and "sessionSecret" not in again, path
    # The seed's calls without a sessionId: a new session each time, with its secret.
    status, answer = await post(client, tenant, "/api/chat/anonymous-token", {})
    assert status == 200 and answer["sessionSecret"] and answer["sessionId"]


async def test_a_leaked_session_id_without_its_secret_gets_403_and_changes_nothing(chat, db_conn):
    client, tenant = chat
    sid = session_id()
    await started(client, tenant, sid)
    before = row(db_conn, "SELECT fingerprint, user_id, visitor_info, last_seq FROM sessions WHERE session_id = %s", sid)
    for secret in (None, "wrong-secret"):
        proof = {"sessionSecret": secret} if secret else {}
        for path, extra in [("/api/chat/anonymous-token", {}), ("/webchat/message", {"text": "taken over"}),
                            ("/api/chat/messages", {"text": "taken over"}),
                            ("/api/chat/session", {"siteKey": tenant.site_key})]:
            status, answer = await post(client, tenant, path, {"sessionId": sid, "fingerprint": "fp-evil",
                                                               "userId": "mallory", **proof, **extra})
            assert status == 403 and answer["code"] == "FORBIDDEN", path
            assert answer["errors"] == {"sessionSecret": "missing or wrong"} and "token" not in answer
    assert row(db_conn, "SELECT fingerprint, user_id, visitor_info, last_seq FROM sessions WHERE session_id = %s",
               sid) == before


async def test_a_leaked_session_id_cannot_join_a_tokenless_socket(chat, db_conn):
    client, tenant = chat
    sid = session_id()
    secret = await started(client, tenant, sid)
    ws = await client.ws_connect(f"/ws/{sid}")
    assert (await recv(ws))["joined"] is False
    for frame in ({"type": "join", "siteKey": tenant.site_key},
                  {"type": "message", "siteKey": tenant.site_key, "text": "taken over", "sessionSecret": "nope"}):
        await ws.send_json(frame)
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "FORBIDDEN" and "sessionSecret" in error["errors"]
    await ws.send_json({"type": "sync", "since": 0})  # still not joined: nothing of the conversation
    assert (await recv(ws))["code"] == "VALIDATION_ERROR"
    assert row(db_conn, "SELECT last_seq FROM sessions WHERE session_id = %s", sid) == (1,)
    # With the secret the same socket joins, and gets the history it asks for.
    await ws.send_json({"type": "join", "siteKey": tenant.site_key, "sessionSecret": secret})
    joined = await recv(ws)
    assert joined["type"] == "connection_status" and joined["joined"] is True and joined["lastSeq"] == 1
    assert "sessionSecret" not in joined
    await ws.send_json({"type": "sync", "since": 0})
    assert (await until(ws, "meta_message_created"))["message"]["text"] == "mine"
    await ws.close()


async def test_the_secret_or_a_valid_token_resumes(chat):
    client, tenant = chat
    sid = session_id()
    secret = await started(client, tenant, sid)
    status, answer = await post(client, tenant, "/api/chat/anonymous-token", {"sessionId": sid, "sessionSecret": secret})
    assert status == 200 and "sessionSecret" not in answer
    token = answer["token"]
    # A still-valid token for the session: messages, a new token for it, its socket.
    status, answer = await post(client, tenant, "/webchat/message", {"sessionId": sid, "text": "with my token"}, token)
    assert status == 200 and answer["seq"] == 2
    status, renewed = await post(client, tenant, "/api/chat/anonymous-token", {}, token)
    assert status == 200 and renewed["sessionId"] == sid
    status, answer = await post(client, tenant, "/api/chat/anonymous-token", {"sessionId": session_id()}, token)
    assert status == 403  # a token speaks for its own session only
    ws = await client.ws_connect(f"/ws/{sid}?token={renewed['token']}")
    status_frame = await recv(ws)
    assert status_frame["joined"] is True and status_frame["lastSeq"] == 2
    await ws.close()


async def test_a_tenant_may_resume_sessions_by_id_alone(chat, db_conn):
    client, tenant = chat
    sid = session_id()
    await started(client, tenant, sid)
    headers = tenant.bearer(tenant.admin_token)
    assert (await (await client.get("/api/tenant", headers=headers)).json())["data"]["tenant"]["sessionResume"] == "secret"
    resp = await client.put("/api/tenant", json={"sessionResume": "anyone"}, headers=headers)
    assert resp.status == 400 and "sessionResume" in (await resp.json())["errors"]
    resp = await client.put("/api/tenant", json={"sessionResume": "session_id"}, headers=headers)
    assert resp.status == 200 and (await resp.json())["data"]["tenant"]["sessionResume"] == "session_id"
    status, answer = await post(client, tenant, "/webchat/message", {"sessionId": sid, "text": "by id"})
    assert status == 200 and answer["seq"] == 2 and "sessionSecret" not in answer
    assert (await post(client, tenant, "/api/chat/anonymous-token", {"sessionId": sid}))[0] == 200
    ws = await client.ws_connect(f"/ws/{sid}")
    await recv(ws)
    await ws.send_json({"type": "join", "siteKey": tenant.site_key})
    assert (await recv(ws))["joined"] is True
    await ws.close()
    # Another tenant's setting changes nothing here.
    other = await make_tenant(client.app[DB], client.app[SETTINGS])
    sid2 = session_id()
    await started(client, other, sid2)
    assert (await post(client, other, "/webchat/message", {"sessionId": sid2, "text": "x"}))[0] == 403


async def test_a_claimed_user_id_without_verification_reads_only_its_own_session(chat, db_conn):
    client, tenant = chat
    first, second = session_id(), session_id()
    for sid in (first, second):
        status, _ = await post(client, tenant, "/webchat/message", {"sessionId": sid, "userId": "user-7", "text": sid})
        assert status == 200
    assert row(db_conn, "SELECT user_id, user_verified FROM sessions WHERE session_id = %s", first) == ("user-7", False)
    status, answer = await post(client, tenant, "/api/chat/anonymous-token", {"userId": "user-7"})
    assert status == 200
    token = answer["token"]
    assert "uid" not in jwt.decode(token, options={"verify_signature": False})
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "userId": "user-7"},
                            headers=tenant.bearer(token))
    assert resp.status == 403 and (await resp.json())["errors"] == {"userId": "not this token's user"}
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "sessionId": first},
                            headers=tenant.bearer(token))
    assert resp.status == 403
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "sessionId": answer["sessionId"]},
                            headers=tenant.bearer(token))
    assert resp.status == 200 and (await resp.json())["messages"] == []
    # Staff still read the user's history across sessions by the claimed userId.
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "userId": "user-7"},
                            headers=tenant.bearer(tenant.secret_key))
    assert [m["text"] for m in (await resp.json())["messages"]] == [first, second]


async def test_a_verified_user_reads_across_its_sessions(aiohttp_client, make_app, db_conn):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], identity_verification=True)
    secret = row(db_conn, "SELECT identity_secret FROM tenants WHERE id = %s", tenant.id)[0]
    proof = {"userId": "user-7", "userHash": credentials.user_hash(secret, "user-7")}
    first, second = session_id(), session_id()
    for sid in (first, second):
        assert (await post(client, tenant, "/webchat/message", {"sessionId": sid, "text": sid, **proof}))[0] == 200
    assert row(db_conn, "SELECT user_id, user_verified FROM sessions WHERE session_id = %s", first) == ("user-7", True)
    status, answer = await post(client, tenant, "/api/chat/anonymous-token", proof)
    assert jwt.decode(answer["token"], options={"verify_signature": False})["uid"] == "user-7"
    resp = await client.get("/api/chat/messages", params={"tenantId": tenant.id, "userId": "user-7"},
                            headers=tenant.bearer(answer["token"]))
    assert [m["text"] for m in (await resp.json())["messages"]] == [first, second]


async def test_the_seeds_raw_socket_creates_its_session_and_gets_the_secret_before_the_ack(chat):
    client, tenant = chat
    sid = session_id()
    ws = await client.ws_connect(f"/ws/{sid}")
    assert (await recv(ws))["type"] == "connection_status"
    await ws.send_json({"type": "message", "sessionId": sid, "siteKey": tenant.site_key, "message": "Hello!",
                        "timestamp": "2024-01-15T10:30:00Z"})
    joined = await recv(ws)
    assert joined["type"] == "connection_status" and joined["joined"] is True and joined["lastSeq"] == 0
    assert joined["sessionSecret"]
    assert (await until(ws, "ack"))["seq"] == 1
    await ws.close()
    # The secret it got resumes the session on another socket.
    other = await client.ws_connect(f"/ws/{sid}")
    await recv(other)
    await other.send_json({"type": "join", "siteKey": tenant.site_key, "sessionSecret": joined["sessionSecret"]})
    assert (await recv(other))["lastSeq"] == 1
    await other.close()


async def test_a_message_stored_right_after_connection_status_is_received(chat):
    """`connection_status` `joined` goes out once the socket follows its conversation (issue 17)."""
    client, tenant = chat
    sid = session_id()
    status, answer = await post(client, tenant, "/api/chat/anonymous-token", {"sessionId": sid,
                                                                              "siteKey": tenant.site_key})
    for n in range(5):
        ws = await client.ws_connect(f"/ws/{sid}?token={answer['token']}")
        joined = await recv(ws)
        assert joined["type"] == "connection_status" and joined["joined"] is True and joined["lastSeq"] == n
        stored = await client.app[WRITER].submit(Draft(tenant.id, sid, "agent", f"right after {n}",
                                                       metadata={"agentName": "A"}))
        reply = await until(ws, "message")
        assert (reply["message"], reply["seq"]) == (f"right after {n}", stored.seq) == (f"right after {n}", n + 1)
        await ws.send_json({"type": "join"})  # joined again: its answer says where it stands
        again = await until(ws, "connection_status")
        assert again["joined"] is True and again["lastSeq"] == n + 1
        assert [f for f in await nothing_more(ws, 0.1) if f["type"] == "message"] == []
        await ws.close()


async def test_reading_an_existing_session_needs_the_same_proof(chat):
    """`visitors.enter(create=False)`, for routes that only read a session (later: a rating)."""
    client, tenant = chat
    sid = session_id()
    secret = await started(client, tenant, sid)
    app = client.app
    enter = lambda **claim: visitors.enter(app[DB], app[REDIS], app[PUBLIC_WIDGETS],  # noqa: E731
                                           visitors.Claim(tenant.id, sid, **claim), create=False)
    with pytest.raises(Forbidden) as refused:
        await enter()
    assert refused.value.errors == {"sessionSecret": "missing or wrong"}
    assert (await enter(secret=secret)).session["last_seq"] == 1
    assert (await enter(trusted=True)).session["session_id"] == sid
