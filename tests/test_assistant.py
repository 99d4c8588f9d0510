"""The assistant: FAQ matching, asking for a person, the LLM implementation against a local model
server (answering, then 500, then hanging), and the supervised reply task set."""
from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from amoiq_chat import db
from amoiq_chat.appkeys import DB, REPLIES, SETTINGS
from amoiq_chat.assistant import Conversation, FaqAssistant, wants_person
from amoiq_chat.assistant.faq import FALLBACK, best_answer
from amoiq_chat.services.replies import ReplyTasks

from .chat_fixtures import make_tenant, recv, session_id, until

FAQ = [{"keywords": ["opening hours", "open"], "answer": "We are open 9-17."},
       {"keywords": ["refund", "money back"], "answer": "Refunds take 5 days."},
       {"keywords": ["shipping cost"], "answer": "Shipping is free over 50 EUR."}]
API_KEY = "sk-test-do-not-log-me-1234567890"
URL_KEY = "url-key-do-not-log-me"  # some providers take the key in the query


@pytest.mark.parametrize("text, answer", [
    ("What are your opening hours?", "We are open 9-17."),
    ("HOURS OPENING??", "We are open 9-17."),  # case, punctuation, word order
    ("when are you open", "We are open 9-17."),
    ("I want my money back!", "Refunds take 5 days."),
    ("Refunds, how long?", "Refunds take 5 days."),  # plural folded
    ("how much does shipping cost", "Shipping is free over 50 EUR."),
    ("shipping", None),  # half a keyword is no match
    ("Tell me a joke", None),
])
def test_best_faq_answer(text, answer):
    assert best_answer(text, FAQ) == answer


def test_the_more_specific_entry_wins():
    faq = [{"keywords": ["order"], "answer": "general"}, {"keywords": ["cancel order"], "answer": "cancel"}]
    assert best_answer("How do I cancel my order?", faq) == "cancel"
    assert best_answer("order: cancel it please", faq) == "cancel"
    assert best_answer("where is my order", faq) == "general"


@pytest.mark.parametrize("text", ["I want to talk to a human", "AGENT please!", "Can I speak to someone?",
                                  "je veux parler à quelqu'un", "quiero hablar con alguien", "Ich möchte einen Mitarbeiter",
                                  "posso falar com alguém?", "vorrei parlare con qualcuno"])
def test_asking_for_a_person(text):
    assert wants_person(text)


@pytest.mark.parametrize("text", ["What are your opening hours?", "humanitarian aid", "thanks, bye"])
def test_not_asking_for_a_person(text):
    assert not wants_person(text)


async def test_faq_assistant_welcomes_first_then_answers_or_offers_a_person():
    bot = FaqAssistant()
    first = Conversation(text="hello", first=True, welcome_message="Welcome!", faq=FAQ)
    assert await bot.reply(first) == ["Welcome!"]
    first_question = Conversation(text="refund?", first=True, welcome_message="Welcome!", faq=FAQ)
    assert await bot.reply(first_question) == ["Welcome!", "Refunds take 5 days."]
    assert await bot.reply(Conversation(text="refund?", first=False, welcome_message="Welcome!", faq=FAQ)) == [
        "Refunds take 5 days."]
    assert await bot.reply(Conversation(text="weather?", first=False, faq=FAQ)) == [FALLBACK]


class ModelServer:
    """A local OpenAI-compatible endpoint: answers, fails with 500 or hangs, as told."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.requests: list[tuple[dict, str | None]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.complete)

    async def complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((body, request.headers.get("Authorization")))
        if self.mode == "fail":
            return web.json_response({"error": {"message": "overloaded"}}, status=500)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        asked = body["messages"][-1]["content"]
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": f"Model says: {asked}"}}]})


@pytest.fixture
async def model(aiohttp_server):
    server = ModelServer()
    running = await aiohttp_server(server.app)
    server.url = str(running.make_url("/v1/chat/completions"))
    return server


async def open_visitor(client, tenant, sid):
    ws = await client.ws_connect(f"/ws/{sid}")
    await recv(ws)
    await ws.send_json({"type": "join", "siteKey": tenant.site_key})
    assert (await until(ws, "connection_status"))["status"] == "joined"
    return ws


async def test_llm_answers_then_the_faq_assistant_when_it_fails_or_hangs(aiohttp_client, make_app, model, caplog):
    client = await aiohttp_client(make_app(bot_enabled=True, bot_llm_url=f"{model.url}?key={URL_KEY}", bot_llm_model="tiny-1",
                                           bot_llm_api_key=API_KEY, bot_llm_timeout=1))
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    async with client.app[DB].acquire() as conn:
        await db.execute(conn, "UPDATE widget_configs SET faq = %s WHERE site_key = %s",
                         (db.jsonb(FAQ), tenant.site_key))
    ws = await open_visitor(client, tenant, session_id())

    # The model answers, with the FAQ as system context and the conversation so far.
    await ws.send_json({"type": "message", "message": "Do you ship abroad?"})
    reply = await until(ws, "message")
    assert reply["message"] == "Model says: Do you ship abroad?"
    assert reply["metadata"] == {"agentName": "AI Assistant", "isAI": True}
    body, auth = model.requests[-1]
    assert auth == f"Bearer {API_KEY}" and body["model"] == "tiny-1"
    assert body["messages"][0]["role"] == "system" and "Refunds take 5 days." in body["messages"][0]["content"]
    assert body["messages"][1:] == [{"role": "user", "content": "Do you ship abroad?"}]
    await ws.send_json({"type": "message", "message": "And to Norway?"})
    assert (await until(ws, "message"))["message"] == "Model says: And to Norway?"
    assert [m["content"] for m in model.requests[-1][0]["messages"][1:]] == [
        "Do you ship abroad?", "Model says: Do you ship abroad?", "And to Norway?"]

    # The model fails: the FAQ assistant answers instead.
    model.mode = "fail"
    caplog.set_level(logging.WARNING, logger="amoiq_chat")
    await ws.send_json({"type": "message", "message": "refund please"})
    assert (await until(ws, "message"))["message"] == "Refunds take 5 days."

    # The model hangs: the socket is not held up (the next message is acked at once), and after
    # the timeout the FAQ assistant answers both, in order.
    model.mode = "hang"
    await ws.send_json({"type": "message", "message": "opening hours?", "clientMessageId": "h-1"})
    await ws.send_json({"type": "message", "message": "hello?", "clientMessageId": "h-2"})
    skipped: list = []
    assert (await until(ws, "ack", skipped=skipped))["clientMessageId"] == "h-1"
    assert (await until(ws, "ack", skipped=skipped))["clientMessageId"] == "h-2"
    assert [f for f in skipped if f["type"] == "message"] == []
    answers = [(await until(ws, "message", timeout=10))["message"] for _ in range(2)]
    assert answers == ["We are open 9-17.", FALLBACK]
    failures = [r.getMessage() for r in caplog.records if "assistant model" in r.getMessage()]
    assert any("HTTP 500" in m for m in failures) and any("timed out" in m for m in failures)
    assert API_KEY not in caplog.text and URL_KEY not in caplog.text
    await ws.close()


async def test_shutdown_does_not_wait_for_a_hanging_model(aiohttp_client, make_app, model):
    client = await aiohttp_client(make_app(bot_enabled=True, bot_llm_url=model.url, bot_llm_timeout=60))
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    model.mode = "hang"
    ws = await open_visitor(client, tenant, session_id())
    await ws.send_json({"type": "message", "message": "anyone?"})
    await until(ws, "typing")
    replies = client.app[REPLIES]
    started = asyncio.get_running_loop().time()
    await ws.close()
    await client.close()  # runs the cleanup contexts: the reply task is cancelled
    assert asyncio.get_running_loop().time() - started < 10
    await asyncio.wait_for(replies.idle(), 1)


async def test_reply_tasks_keep_each_sessions_order_and_bound_concurrency():
    tasks = ReplyTasks(concurrency=2)
    running, most, done = 0, 0, []
    release = asyncio.Event()

    def job(session, n):
        async def run():
            nonlocal running, most
            running += 1
            most = max(most, running)
            await release.wait()
            done.append((session, n))
            running -= 1
        return run

    for n in range(3):
        for session in ("a", "b", "c"):
            assert tasks.submit(session, job(session, n))
    await asyncio.sleep(0)
    release.set()
    await tasks.idle()
    assert most == 2
    for session in ("a", "b", "c"):
        assert [n for s, n in done if s == session] == [0, 1, 2]


async def test_reply_tasks_survive_a_failing_job_and_stop_cancels_the_rest():
    tasks = ReplyTasks(concurrency=4)
    ran = []

    async def boom():
        raise RuntimeError("bad reply")

    async def after():
        ran.append("after")

    async def forever():
        await asyncio.sleep(3600)

    tasks.submit("s", boom)
    tasks.submit("s", after)
    await tasks.idle()
    assert ran == ["after"]
    tasks.submit("t", forever)
    await asyncio.sleep(0)
    await asyncio.wait_for(tasks.stop(), 5)
    await asyncio.wait_for(tasks.idle(), 1)
    assert tasks.submit("t", after) is False  # stopped: nothing new starts
