"""The support workflow end to end over real sockets on two server processes (issue 15, "Done when")."""
from __future__ import annotations

import pytest

from amoiq_chat import db

from .chat_fixtures import ServerProcess, make_tenant, nothing_more, session_id, until
from .test_chat_cross_process import http, open_staff, open_visitor, pool  # noqa: F401  (fixtures)

FAQ = [{"keywords": ["opening hours", "open"], "answer": "We are open 9:00-17:00, Monday to Friday."},
       {"keywords": ["refund"], "answer": "Refunds take 5 working days."}]
WELCOME = "Welcome to Acme! How can we help?"


@pytest.fixture(scope="module")
def servers(settings):
    """Two server processes with the assistant on."""
    a, b = ServerProcess(settings, BOT_ENABLED="1"), ServerProcess(settings, BOT_ENABLED="1")
    try:
        yield a.wait(), b.wait()
    finally:
        logs = a.stop() + b.stop()
        assert "Traceback" not in logs, logs


async def support_tenant(pool, settings, agents=1):
    tenant = await make_tenant(pool, settings, agents=agents)
    async with pool.acquire() as conn:
        await db.execute(conn, "UPDATE widget_configs SET faq = %s, welcome_message = %s WHERE site_key = %s",
                         (db.jsonb(FAQ), WELCOME, tenant.site_key))
    return tenant


async def says(ws, text):
    await ws.send_json({"type": "message", "message": text})
    return await until(ws, "ack")


async def ai_replies(ws, count):
    """The next `count` reply `message` frames, checking each is the assistant's."""
    replies = [await until(ws, "message") for _ in range(count)]
    assert all(r["metadata"] == {"agentName": "AI Assistant", "isAI": True} for r in replies), replies
    return [r["message"] for r in replies]


def updates(frames):
    return [(f["position"], f["estimatedWait"]) for f in frames if f["type"] == "queue_update"]


async def test_the_whole_story_on_two_processes(servers, pool, http, settings, db_conn):
    a, b = servers
    tenant = await support_tenant(pool, settings)
    agent = tenant.agents[0]
    staff = await open_staff(http, b, agent["id"], agent["token"])  # online before anyone escalates
    s1, s2, s3 = session_id(), session_id(), session_id()

    # A visitor greets: the assistant shows typing, welcomes and answers from the FAQ, case and word order aside.
    v1 = await open_visitor(http, a, s1, tenant)
    await says(v1, "Hi there! what are your HOURS of opening?")
    typing = await until(v1, "typing")
    assert typing["isTyping"] is True and typing["sender"] == "ai"
    assert await ai_replies(v1, 2) == [WELCOME, FAQ[0]["answer"]]

    # The visitor asks for a human: the assistant says once that a person is coming; place 1, 2 minutes.
    await says(v1, "Can I talk to a real person please")
    assert await ai_replies(v1, 1) == ["I'm bringing in a person from our team. Please stay with us: "
                                       "you'll see your place in the queue."]
    first = await until(v1, "queue_update")
    assert (first["position"], first["estimatedWait"]) == (1, 2)
    assert [s["sessionId"] for s in (await until(staff, "waiting_sessions"))["sessions"]] == [s1]

    # Two more visitors escalate: one with the frame on process B, one with the REST route on A.
    v2 = await open_visitor(http, b, s2, tenant)
    await v2.send_json({"type": "escalate", "reason": "customer_requested_human"})
    second = await until(v2, "queue_update")
    assert (second["position"], second["estimatedWait"]) == (2, 4)
    v3 = await open_visitor(http, a, s3, tenant)
    resp = await http.post(f"{a.url}/api/widgets/escalate/{tenant.site_key}/{s3}", json={"reason": "frustrated"})
    assert resp.status == 200
    assert (await resp.json())["data"] == {"sessionId": s3, "queuePosition": 3, "estimatedWait": 6, "status": "waiting"}
    third = await until(v3, "queue_update")
    assert (third["position"], third["estimatedWait"]) == (3, 6)
    for sid, place in ((s1, 1), (s2, 2), (s3, 3)):
        got = await (await http.get(f"{b.url}/api/widgets/queue-position/{tenant.site_key}/{sid}")).json()
        assert got["data"] == {"position": place, "estimatedWait": 2 * place, "status": "waiting"}
    queued = await until(staff, "waiting_sessions")
    while [s["sessionId"] for s in queued["sessions"]] != [s1, s2, s3]:
        queued = await until(staff, "waiting_sessions")
    # Escalating again keeps the place, and tells nobody anything new.
    await v2.send_json({"type": "escalate"})
    again = await until(v2, "queue_update")
    assert again["position"] == 2
    assert updates(await nothing_more(v1)) == [] and updates(await nothing_more(v3)) == []

    # The agent (process B) accepts the first chat: the others move up, each told once.
    await staff.send_json({"type": "accept_chat", "sessionId": s1})
    accepted = await until(staff, "chat_accepted")
    assert [m["isAI"] for m in accepted["messages"]] == [False, True, True, False, True]
    assert (await until(v1, "agent_joined"))["agentName"] == agent["name"]
    assert (await until(v2, "queue_update"))["position"] == 1
    assert (await until(v3, "queue_update"))["position"] == 2
    assert updates(await nothing_more(v2)) == [] and updates(await nothing_more(v3)) == []
    assert updates(await nothing_more(v1)) == []

    # The agent chats; the assistant stays quiet while the agent holds the chat.
    await staff.send_json({"type": "send_message", "sessionId": s1, "text": "Hello, I'm here to help."})
    reply = await until(v1, "message")
    assert reply["message"] == "Hello, I'm here to help." and reply["metadata"]["isAI"] is False
    mine = await until(staff, "new_message")
    assert mine["message"]["sender"] == "agent"
    await says(v1, "My order never arrived, what are your opening hours?")
    assert (await until(staff, "new_message"))["message"]["text"] == "My order never arrived, what are your opening hours?"
    assert [f for f in await nothing_more(v1, 0.8) if f["type"] == "message"] == []

    # Back to the assistant: the visitor is told, and the assistant answers again.
    await staff.send_json({"type": "return_to_ai", "sessionId": s1})
    assert (await until(v1, "agent_left"))["aiMode"] is True
    await says(v1, "And refunds?")
    assert await ai_replies(v1, 1) == [FAQ[1]["answer"]]

    # The agent takes the second chat, answers, closes it; the visitor rates it, once.
    await staff.send_json({"type": "accept_chat", "sessionId": s2})
    await until(staff, "chat_accepted")
    assert (await until(v3, "queue_update"))["position"] == 1
    await staff.send_json({"type": "send_message", "sessionId": s2, "text": "How can I help?"})
    assert (await until(v2, "message"))["message"] == "How can I help?"
    await staff.send_json({"type": "close_chat", "sessionId": s2})
    closed = await until(v2, "chat_closed")
    assert closed["sessionId"] == s2
    await v2.send_json({"type": "rating", "rating": 4, "comment": "Quick and kind"})
    assert (await until(v2, "rating_received"))["rating"] == 4
    await v2.send_json({"type": "rating", "rating": 1})
    error = await until(v2, "error")
    assert error["code"] == "CONFLICT" and error["frameType"] == "rating"

    # The stats routes show what happened.
    with db_conn.cursor() as cur:
        cur.execute("SELECT status, ai_mode, ended_at IS NOT NULL FROM sessions WHERE session_id = %s", (s2,))
        assert cur.fetchone() == ("closed", False, True)
        cur.execute("SELECT rating, comment, agent_id FROM ratings WHERE session_id = %s", (s2,))
        assert cur.fetchall() == [(4, "Quick and kind", agent["id"])]
        # first responses: from each escalation to the agent's first reply after accepting
        cur.execute("SELECT avg(EXTRACT(EPOCH FROM (SELECT min(created_at) FROM messages m WHERE m.session_id ="
                    " s.session_id AND m.sender_type = 'agent') - s.escalated_at)) FROM sessions s"
                    " WHERE s.session_id IN (%s, %s)", (s1, s2))
        first_response = float(cur.fetchone()[0])
    stats = await (await http.get(f"{a.url}/api/agents/stats", headers=tenant.bearer(agent["token"]))).json()
    assert stats["data"] == {"chatsHandled": 2, "activeChats": 0,
                             "avgResponseTime": f"{first_response / 60:.1f} min", "customerSatisfaction": 4.0}
    team = await (await http.get(f"{b.url}/api/agents/stats", headers=tenant.bearer(tenant.admin_token))).json()
    assert team["data"] == stats["data"]
    active = await (await http.get(f"{a.url}/api/agents/active-chats", headers=tenant.bearer(agent["token"]))).json()
    assert active["data"] == []
    waiting = await (await http.get(f"{a.url}/api/agents/waiting-sessions",
                                    headers=tenant.bearer(agent["token"]))).json()
    assert [s["sessionId"] for s in waiting["sessions"]] == [s3]
    queue = await (await http.get(f"{b.url}/api/widgets/{tenant.site_key}/queue-stats",
                                  headers=tenant.bearer(tenant.secret_key))).json()
    assert queue["data"]["stats"]["waitingSessions"] == 1 and queue["data"]["stats"]["availableAgents"] == 1
    overview = await (await http.get(f"{a.url}/api/widgets/stats/overview",
                                     headers=tenant.bearer(tenant.admin_token))).json()
    assert overview["data"]["stats"]["customer_satisfaction"] == 4.0
    assert overview["data"]["stats"]["total_chats"] == 3
    for ws in (v1, v2, v3, staff):
        await ws.close()
