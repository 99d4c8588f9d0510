"""The widget and the agent console in real Chromium (Debian's), against real server processes.

Two server processes share the test database and Redis: A serves the widget's script and its
socket, B the agent console; the shop pages that embed the widget come from a third origin.
Screenshots of each step are kept under var/browser-artifacts/<test>/.
"""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageChops

from .browser import PASSWORD, Browser, HostSite, Widget, artifacts_for, set_up_tenant, texts
from .chat_fixtures import ServerProcess
from .console_page import Console
from .factories import fetch

HOSTILE_CSS = """<style>
* { font-family: "Comic Sans MS", serif !important; font-size: 31px !important; color: red !important;
    background: yellow !important; line-height: 3 !important; letter-spacing: 4px !important;
    text-transform: uppercase !important; border: 3px dashed green !important; padding: 9px !important;
    margin: 7px !important; box-sizing: content-box !important; box-shadow: 0 0 9px blue !important;
    border-radius: 0 !important; text-align: right !important; }
div, p, span, button, textarea, form, h2, section { display: block !important; float: left !important;
    width: 77px !important; height: 33px !important; opacity: .8 !important; }
amoiq-chat { display: none !important; position: static !important; transform: scale(.5) !important; }
svg { display: none !important; }
</style>"""
CORNER = 14  # the panel's rounded corners (12 px) show the page behind them: not the widget's look
NOISE = 24  # grey levels of difference that anti-aliasing alone may make


@pytest.fixture(scope="module")
def servers(settings):
    """Server processes A (the widget's) and B (the console's), replaceable by a test that restarts A."""
    # The assistant answers (BOT_ENABLED: the support workflow's setting, unknown to older servers).
    running = {"a": ServerProcess(settings, BOT_ENABLED="1"), "b": ServerProcess(settings, BOT_ENABLED="1")}
    try:
        running["a"].wait(), running["b"].wait()
        yield running
    finally:
        logs = running["a"].stop() + running["b"].stop()
        assert "Traceback" not in logs, logs


@pytest.fixture(scope="module")
def site():
    """The shop: another origin than the app's."""
    shop = HostSite()
    yield shop
    shop.close()


@pytest.fixture(scope="module")
def visitor_browser(tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("shots"), "visitor")
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def agent_browser(tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("shots"), "agent")
    yield browser
    browser.quit()


@pytest.fixture
def artifacts(request):
    return artifacts_for(request)


@pytest.fixture
def visitor(visitor_browser, artifacts):
    return visitor_browser.use(artifacts)


@pytest.fixture
def agent(agent_browser, artifacts):
    return agent_browser.use(artifacts)


@pytest.fixture
def tenant(servers):
    return set_up_tenant(servers["b"].url)


def shop_page(site, servers, tenant, path="/shop.html", **kwargs):
    """A shop page embedding server A's widget with the tenant's site key and publishable key."""
    kwargs.setdefault("key", tenant["publishable_key"])
    return site.page(path, servers["a"].url + "/widget.js", tenant["site_key"], **kwargs)


def acked(text):
    """A predicate: the visitor's bubble with `text` is stored (has its seq, no longer 'sending')."""
    return lambda s: any(b["text"] == text and b["seq"] and "wait" not in b["cls"] for b in s["bubbles"])


def stored_messages(db_conn, session_id):
    """The visitor's and agents' stored messages (the assistant, when it runs, adds its own between them)."""
    return fetch(db_conn, "SELECT sender_type, message, client_message_id FROM messages WHERE session_id = %s"
                 " AND sender_type IN ('visitor', 'agent') ORDER BY seq", session_id)


# Steps that pass on this branch ---------------------------------------------------------------

def test_widget_sends_is_acknowledged_and_keeps_its_session(visitor, site, servers, tenant, db_conn):
    widget = Widget(visitor, tenant["site_key"])
    visitor.driver.get(shop_page(site, servers, tenant))
    first = widget.until(lambda s: s["launcherLabel"] == "Open chat" and not s["panelOpen"], "the closed launcher")
    assert first["badge"] == 0
    visitor.shot("01-launcher")

    opened = widget.open()
    assert texts(opened) == ["Hello! Ask us anything."] and opened["human"]
    joined = widget.connected()
    session_id = joined["stored"]["sessionId"]
    visitor.shot("02-open")

    widget.say("Hello from the shop")
    state = widget.until(acked("Hello from the shop"), "the ack of the first message")
    assert texts(state, "You") == ["Hello from the shop"]
    assert state["stored"]["pending"] == []
    [(sender, text, client_id)] = stored_messages(db_conn, session_id)
    assert (sender, text) == ("visitor", "Hello from the shop") and client_id.startswith("cm_")
    visitor.shot("03-acked")

    visitor.driver.refresh()  # a reload keeps the conversation, shown once
    widget.until(lambda s: s["stored"].get("sessionId") == session_id, "the stored session after a reload")
    widget.open()
    again = widget.until(acked("Hello from the shop"), "the history after a reload")
    assert texts(again, "You") == ["Hello from the shop"]
    assert stored_messages(db_conn, session_id) == [("visitor", "Hello from the shop", client_id)]
    visitor.shot("04-reloaded")

    # Keyboard: Escape closes the panel and gives the focus back to the launcher; Enter opens it again.
    root = widget.root()
    root.find_element("css selector", "textarea").send_keys("\ue00c")  # Escape
    closed = widget.until(lambda s: not s["panelOpen"], "the panel closed by Escape")
    assert visitor.driver.execute_script(
        "return document.querySelector('amoiq-chat').shadowRoot.activeElement.className") == "launch"
    assert closed["launcherLabel"] == "Open chat"
    root.find_element("css selector", ".launch").send_keys("\ue007")  # Enter
    widget.until(lambda s: s["panelOpen"], "the panel opened from the keyboard")
    roles = visitor.driver.execute_script(
        "const r = document.querySelector('amoiq-chat').shadowRoot;"
        "return [r.querySelector('.log').getAttribute('role'), r.querySelector('.panel').getAttribute('role'),"
        " r.querySelector('textarea').getAttribute('aria-label')]")
    assert roles == ["log", "dialog", "Type your message"]


def test_widget_without_publishable_key_joins_with_the_site_key(visitor, site, servers, tenant, db_conn):
    widget = Widget(visitor, tenant["site_key"])
    visitor.driver.get(site.page("/tokenless.html", servers["a"].url + "/widget.js", tenant["site_key"]))
    widget.open()
    session_id = widget.connected()["stored"]["sessionId"]
    widget.say("No key here")
    widget.until(acked("No key here"), "the ack over a tokenless socket")
    assert [m[1] for m in stored_messages(db_conn, session_id)] == ["No key here"]
    visitor.shot("01-tokenless")


def test_identify_names_the_visitor(visitor, site, servers, tenant, db_conn):
    widget = Widget(visitor, tenant["site_key"])
    queue = ('<script>window.AmoiqChat = [["identify", {userId: "user-42", name: "Ada Lovelace",'
             ' email: "ada@example.com"}]];</script>')
    visitor.driver.get(shop_page(site, servers, tenant, "/identified.html", before=queue))
    widget.open()
    session_id = widget.connected()["stored"]["sessionId"]
    widget.say("I am logged in")
    widget.until(acked("I am logged in"), "the ack")
    assert fetch(db_conn, "SELECT user_id, visitor_name, visitor_email FROM sessions WHERE session_id = %s",
                 session_id) == [("user-42", "Ada Lovelace", "ada@example.com")]


def test_console_login_queue_accept_and_reply(visitor, agent, site, servers, tenant, db_conn):
    widget = Widget(visitor, tenant["site_key"])
    visitor.driver.get(shop_page(site, servers, tenant))
    widget.open()
    session_id = widget.connected()["stored"]["sessionId"]
    widget.say("Hello, anyone there?")
    widget.until(acked("Hello, anyone there?"), "the visitor's message")
    # The escalation itself is another branch's work: put the chat in the queue as it would.
    with db_conn.cursor() as cur:
        cur.execute("UPDATE sessions SET status = 'waiting', escalated_at = now() WHERE session_id = %s", (session_id,))

    console = Console(agent, servers["b"].url)
    console.log_in(tenant["agent_email"], "wrong-password-123")
    assert "Invalid email or password" in console.until(lambda s: s["loginError"], "the login error")["loginError"]
    agent.shot("01-login-refused")
    console.log_in(tenant["agent_email"], PASSWORD)
    listed = console.until(lambda s: s["online"] and s["waiting"] and s["visitors"], "the queue and the online visitor")
    assert len(listed["waiting"]) == 1 and listed["waiting"][0].startswith("Customer")
    assert len(listed["visitors"]) == 1
    agent.shot("02-queue")

    console.press("waiting", "Customer", "Accept")
    accepted = console.until(lambda s: s["active"] and "Hello, anyone there?" in s["messages"], "the accepted chat")
    assert accepted["waiting"] == [] or console.until(lambda s: s["waiting"] == [], "the emptied queue")
    widget.click(".x")  # the visitor minimises the chat: the agent's reply counts as unread
    widget.until(lambda s: not s["panelOpen"], "the minimised panel")
    console.reply("Hi, this is Alice")
    console.until(lambda s: "Hi, this is Alice" in s["messages"], "the agent's own reply")
    agent.shot("03-replied")
    unread = widget.until(lambda s: s["badge"] != 0 and "Hi, this is Alice" in texts(s, tenant["agent_name"]),
                          "the unread count on the launcher")
    assert re.fullmatch(r"Open chat \(\d unread\)", unread["launcherLabel"]), unread["launcherLabel"]
    visitor.shot("04-unread")

    widget.open()
    seen = widget.until(lambda s: s["badge"] == 0, "the unread count cleared by opening")
    assert f"{tenant['agent_name']} joined the chat" in seen["notes"]
    assert seen["subtitle"] == f"You are chatting with {tenant['agent_name']}" and not seen["human"]
    visitor.shot("05-agent-joined")

    widget.root().find_element("css selector", "textarea").send_keys("typing")
    console.until(lambda s: s["typing"] == "Customer is typing…", "the visitor's typing indicator")
    agent.driver.find_element("id", "reply").send_keys("…")
    widget.until(lambda s: s["typing"] == f"{tenant['agent_name']} is typing…", "the agent's typing indicator")
    assert [m[:2] for m in stored_messages(db_conn, session_id)] == [("visitor", "Hello, anyone there?"),
                                                                     ("agent", "Hi, this is Alice")]


def test_admin_follows_and_answers_a_chat_in_the_console(visitor, agent, site, servers, tenant, db_conn):
    widget = Widget(visitor, tenant["site_key"])
    visitor.driver.get(shop_page(site, servers, tenant))
    widget.open()
    session_id = widget.connected()["stored"]["sessionId"]
    widget.say("A question for the owner")
    widget.until(acked("A question for the owner"), "the visitor's message")

    console = Console(agent, servers["b"].url)
    console.log_in(tenant["admin_email"], PASSWORD, role="admin")
    console.until(lambda s: s["online"] and s["visitors"], "the online visitor")
    console.press("online", "Anonymous visitor", "View")  # admins follow a chat; they do not take it
    console.until(lambda s: "A question for the owner" in s["messages"], "the chat's history")
    console.reply("The owner here")
    widget.until(lambda s: "The owner here" in texts(s), "the admin's reply in the widget")
    widget.say("Thanks!")
    console.until(lambda s: "Thanks!" in s["messages"], "the visitor's next message, live in the console")
    agent.shot("01-admin-following")
    assert [m[:2] for m in stored_messages(db_conn, session_id)] == [
        ("visitor", "A question for the owner"), ("agent", "The owner here"), ("visitor", "Thanks!")]


def test_widget_reconnects_after_its_server_restarts(visitor, agent, site, servers, tenant, settings, db_conn):
    widget = Widget(visitor, tenant["site_key"])
    visitor.driver.get(shop_page(site, servers, tenant))
    widget.open()
    session_id = widget.connected()["stored"]["sessionId"]
    widget.say("Before the restart")
    widget.until(acked("Before the restart"), "the first message")
    console = Console(agent, servers["b"].url)
    console.log_in(tenant["agent_email"], PASSWORD)
    console.until(lambda s: s["online"] and s["visitors"], "the online visitor")
    console.press("online", "Anonymous visitor", "Take over")  # an agent may take a chat from the assistant
    console.until(lambda s: "Before the restart" in s["messages"], "the taken-over chat")
    widget.until(lambda s: s["subtitle"].startswith("You are chatting with"), "the agent joining")

    servers["a"].kill()  # the process serving the visitor dies
    widget.until(lambda s: s["bar"] == "Reconnecting…", "the reconnecting bar")
    console.reply("Said while you were away")
    console.until(lambda s: "Said while you were away" in s["messages"], "the agent's reply, stored by B")
    widget.say("Are you there?")
    waiting = widget.until(lambda s: any(b["text"] == "Are you there?" and b["status"] == "Sending…" for b in s["bubbles"]),
                           "the unsent message")
    assert waiting["stored"]["pending"][0]["text"] == "Are you there?"
    visitor.shot("01-server-down")

    servers["a"] = ServerProcess(settings, port=servers["a"].port, BOT_ENABLED="1").wait()  # the same address comes back
    back = widget.until(lambda s: s["bar"] is None and acked("Are you there?")(s)
                        and "Said while you were away" in texts(s), "the reconnected widget", timeout=40)
    assert texts(back).count("Said while you were away") == 1
    assert texts(back, "You") == ["Before the restart", "Are you there?"]
    seqs = [b["seq"] for b in back["bubbles"] if b["seq"]]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 3  # each stored message once, in order
    assert back["stored"]["pending"] == []
    console.until(lambda s: "Are you there?" in s["messages"], "the resent message in the console")
    assert [m[1] for m in stored_messages(db_conn, session_id)] == ["Before the restart", "Said while you were away",
                                                                    "Are you there?"]
    visitor.shot("02-reconnected")


def test_hostile_stylesheet_does_not_change_the_widget(visitor, site, servers, tenant, artifacts):
    widget = Widget(visitor, tenant["site_key"])
    shots = []
    for name, head in (("plain", ""), ("hostile", HOSTILE_CSS)):
        visitor.driver.get(shop_page(site, servers, tenant, f"/{name}.html", head=head))
        widget.open()
        widget.connected()
        widget.blur()
        shots.append(widget.panel_png())
        visitor.shot(f"0{len(shots)}-{name}")
        (artifacts / f"panel-{name}.png").write_bytes(shots[-1])
    heading = visitor.driver.execute_script("return getComputedStyle(document.querySelector('h1')).fontSize")
    assert heading == "31px"  # the hostile stylesheet is live on the page itself
    plain, hostile = (Image.open(io.BytesIO(png)).convert("RGB") for png in shots)
    assert plain.size == hostile.size
    diff = ImageChops.difference(plain, hostile)
    width, height = diff.size
    corners = Image.new("L", diff.size, 255)
    for x in (0, width - CORNER):
        for y in (0, height - CORNER):
            corners.paste(0, (x, y, x + CORNER, y + CORNER))
    # A pixel counts as changed beyond anti-aliasing noise (what a hostile rule changes, a font, a colour,
    # a border, a size, moves far more than that).
    changed = ImageChops.multiply(diff.convert("L").point(lambda v: 255 if v > NOISE else 0), corners)
    if changed.getbbox() is not None:
        diff.save(artifacts / "panel-diff.png")
    count = changed.histogram()[255]
    assert changed.getbbox() is None, (f"the widget looks different over the hostile stylesheet: {count} pixels"
                                       f" in {changed.getbbox()} (see panel-diff.png)")


def test_widget_refused_by_allowed_domains_says_so(visitor, site, servers):
    tenant = set_up_tenant(servers["b"].url, allowed_domains=["shop.example.com"])
    widget = Widget(visitor, tenant["site_key"])
    visitor.driver.get(shop_page(site, servers, tenant, "/elsewhere.html"))
    state = widget.open()
    assert state["refused"] == "This chat is not available on this website."
    assert not state["composer"] and state["subtitle"] == "Unavailable"
    visitor.shot("01-refused")


# The whole story: needs the work of other branches (see each step) ---------------------

def test_the_whole_story(visitor, agent, site, servers, tenant, settings, db_conn):
    """The "Done when" of the issue, step by step."""
    widget = Widget(visitor, tenant["site_key"])
    console = Console(agent, servers["b"].url)
    console.log_in(tenant["agent_email"], PASSWORD)
    console.until(lambda s: s["online"], "the console online")

    # 1. The visitor opens the widget on the shop, asks, and the assistant answers. [needs: the AI assistant]
    visitor.driver.get(shop_page(site, servers, tenant))
    widget.open()
    session_id = widget.connected()["stored"]["sessionId"]
    widget.say("What are your opening hours?")
    widget.until(lambda s: texts(s, "AI Assistant"), "the assistant's answer")
    visitor.shot("01-ai-answer")

    # 2. The visitor asks for a person and sees the queue position. [needs: escalation and the queue]
    widget.click(".btn", "Talk to a person")
    widget.until(lambda s: s["subtitle"].startswith("You are number 1 in the queue"), "the queue position")
    visitor.shot("02-queued")

    # 3. The agent sees the waiting chat appear without reloading, accepts it and replies.
    #    [needs: waiting_sessions pushed on escalation]
    console.until(lambda s: s["waiting"], "the waiting chat in the console")
    agent.shot("03-waiting")
    console.press("waiting", "Customer", "Accept")
    console.until(lambda s: "What are your opening hours?" in s["messages"], "the accepted chat's history")
    console.reply("Hello, I am a person")

    # 4. The visitor sees the agent join and the reply.
    widget.until(lambda s: "Hello, I am a person" in texts(s, tenant["agent_name"])
                 and f"{tenant['agent_name']} joined the chat" in s["notes"], "the agent and the reply")
    visitor.shot("04-agent")

    # 5. The visitor's server restarts; what was said meanwhile shows once.
    servers["a"].kill()
    widget.until(lambda s: s["bar"] == "Reconnecting…", "the reconnecting bar")
    console.reply("Meanwhile, your order shipped")
    servers["a"] = ServerProcess(settings, port=servers["a"].port, BOT_ENABLED="1").wait()
    back = widget.until(lambda s: s["bar"] is None and "Meanwhile, your order shipped" in texts(s), "the reconnect",
                        timeout=40)
    assert texts(back).count("Meanwhile, your order shipped") == 1
    visitor.shot("05-reconnected")

    # 6. The agent closes the chat; the visitor sees it end and rates it. [needs: close_chat, chat_closed, rating]
    console.click("close-chat")
    widget.until(lambda s: s["rating"] and s["subtitle"] == "This chat has ended", "the rating form")
    visitor.shot("06-closed")
    widget.click(".star[aria-label='4 out of 5']")
    widget.click(".btn", "Send rating")
    widget.until(lambda s: "Thank you for your rating!" in s["notes"], "the thanks")
    assert fetch(db_conn, "SELECT rating FROM ratings WHERE session_id = %s", session_id) == [(4,)]
    visitor.shot("07-rated")


def test_session_secret_resumes_only_the_creator(visitor, site, servers, tenant, tmp_path):
    """[needs: the session resume secret] The creator's tab keeps the secret and resumes with it; a browser
    that only knows the session id gets a conversation of its own."""
    widget = Widget(visitor, tenant["site_key"])
    visitor.driver.get(shop_page(site, servers, tenant))
    widget.open()
    stored = widget.connected()["stored"]
    assert stored.get("sessionSecret"), "the server gave no sessionSecret to the session's creator"
    widget.say("Mine")
    widget.until(acked("Mine"), "the ack")
    visitor.driver.refresh()
    widget.open()
    widget.until(acked("Mine"), "the resumed conversation")

    other = Browser(tmp_path, "stranger")
    try:
        other.driver.get(shop_page(site, servers, tenant))
        other.driver.execute_script("localStorage.setItem(arguments[0], JSON.stringify({sessionId: arguments[1]}))",
                                    "amoiq-chat:" + tenant["site_key"], stored["sessionId"])
        other.driver.refresh()
        stranger = Widget(other, tenant["site_key"])
        stranger.open()
        theirs = stranger.until(lambda s: s["stored"].get("sessionId") not in (None, stored["sessionId"])
                                and s["bar"] is None, "a conversation of the stranger's own")
        assert "Mine" not in texts(theirs)
    finally:
        other.quit()
