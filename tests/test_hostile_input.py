"""Property-based hostile input (hypothesis) against a real server process: every route's and frame's
string fields, path parameters, query values and a header, with NUL, control characters and lone
surrogates. Never a 500 or an INTERNAL_ERROR frame; a character a field may not hold is a 400 (an
`error` frame) naming that field; and the server logs no traceback."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from amoiq_chat.untrusted import control_problem

from .hostile_fixtures import Server, Socket, fill

EXAMPLES = hypothesis_settings(max_examples=25, deadline=None, database=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture])
POISON = st.sampled_from(["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f", "\ud800",
                          "\udfff", "\n", "\r", "\t", "\u2028", "\ufeff", "%00", "'; --", "\\u0000"])
HOSTILE = st.one_of(st.builds(lambda a, p, b: a + p + b, st.text(max_size=12), POISON, st.text(max_size=12)),
                    st.text(max_size=30))
MULTILINE = {"text", "message", "welcome_message", "faq.0.answer"}


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    """The module's server; at the end, its log must hold no traceback and no unhandled error."""
    running = Server(settings, tmp_path_factory.mktemp("hostile") / "server.log")
    try:
        running.setup_tenant()
        agent = Socket(running.port, running.socket_path("agent"))
        agent.exchange({"type": "accept_chat", "sessionId": running.session_id})  # it holds the chat from now on
        agent.close()
        yield running
    finally:
        log = running.stop()
    assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]


def escaped(value: str) -> str:
    """Percent-encoded for a URL, lone surrogates included (as the bytes a browser would never send)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def put(body: dict, dotted: str, value: Any) -> dict:
    """A deep copy of `body` with the field at `dotted` (e.g. faq.0.keywords.0) set to `value`."""
    body = json.loads(json.dumps(body))
    *parents, last = dotted.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


def must_refuse(field: str, value: str) -> bool:
    """True when the field may not hold `value`'s characters."""
    return control_problem(value, multiline=field.split(".")[-1] in MULTILINE or field in MULTILINE) is not None


def assert_refused_or_fine(field: str, value: str, status: int, body: dict) -> None:
    assert status < 500, (field, value, status, body)
    if must_refuse(field, value):
        assert status == 400 and body["code"] == "VALIDATION_ERROR", (field, value, status, body)
        assert field in body["errors"] or "body" in body["errors"], (field, value, body)


# REST bodies -------------------------------------------------------------------------------------

BODIES = {
    "register": ("POST", "/api/auth/register", None,
                 {"username": "u_{u}", "email": "{u}@example.com", "password": "a-long-pass-9"}),
    "login": ("POST", "/api/auth/login", None, {"email": "{u}@example.com", "password": "a-long-pass-9"}),
    "agent-login": ("POST", "/api/auth/agent-login", None, {"email": "{u}@example.com", "password": "x"}),
    "create agent": ("POST", "/api/agents", "admin",
                     {"username": "a_{u}", "email": "{u}@example.com", "password": "a-long-pass-9", "full_name": "A"}),
    "update agent": ("PUT", "/api/agents/{edited_agent}", "admin", {"full_name": "A", "username": "b_{u}"}),
    "create key": ("POST", "/api/keys", "admin", {"kind": "publishable", "name": "k"}),
    "update tenant": ("PUT", "/api/tenant", "admin", {"name": "T"}),
    "create widget": ("POST", "/api/widgets", "admin", {
        "business_name": "B", "widget_title": "T", "welcome_message": "Hi", "primary_color": "#112233",
        "position": "bottom-left", "allowed_domains": ["example.com"], "faq": [{"keywords": ["k"], "answer": "a"}],
        "prechat_fields": [{"name": "n", "label": "L", "type": "select", "options": ["o"]}]}),
    "update widget": ("PUT", "/api/widgets/{site_key}", "admin", {"widget_title": "T"}),
    "anonymous token": ("POST", "/api/chat/anonymous-token", "pk", {"tenantId": "{tenant_id}", "fingerprint": "f",
                                                                   "userId": "u", "siteKey": "{site_key}"}),
    "session": ("POST", "/api/chat/session", "pk", {"tenantId": "{tenant_id}", "siteKey": "{site_key}",
                                                    "fingerprint": "f", "userInfo": {"name": "n"}}),
    "message": ("POST", "/webchat/message", "pk", {
        "tenantId": "{tenant_id}", "sessionId": "{session_id}", "text": "hi", "clientMessageId": "c-{u}",
        "fingerprint": "f", "userInfo": {"name": "n", "email": "e", "phone": "p"}, "domain": "d", "origin": "o",
        "url": "u", "referrer": "r", "siteId": "{site_key}"}),
}
BODY_FIELDS = {
    "register": ["username", "email", "password"], "login": ["email", "password"],
    "agent-login": ["email", "password"], "create agent": ["username", "email", "password", "full_name"],
    "update agent": ["full_name", "username", "email", "password"], "create key": ["kind", "name"],
    "update tenant": ["name"],
    "create widget": ["business_name", "widget_title", "welcome_message", "primary_color", "secondary_color",
                      "position", "allowed_domains.0", "faq.0.answer", "faq.0.keywords.0", "prechat_fields.0.name",
                      "prechat_fields.0.label", "prechat_fields.0.type", "prechat_fields.0.options.0"],
    "update widget": ["widget_title", "welcome_message", "business_name"],
    "anonymous token": ["tenantId", "sessionId", "userId", "userHash", "fingerprint", "siteKey"],
    "session": ["tenantId", "siteKey", "sessionId", "fingerprint", "userId", "userHash", "userInfo.name",
                "userInfo.email", "userInfo.phone"],
    "message": ["text", "message", "clientMessageId", "tenantId", "sessionId", "fingerprint", "userId", "userHash",
                "userInfo.name", "userInfo.email", "userInfo.phone", "domain", "origin", "url", "referrer", "siteId",
                "siteKey"],
}


@pytest.mark.parametrize("surface", BODIES)
@EXAMPLES
@given(data=st.data())
def test_body_fields(server, surface, data):
    method, path, credential, template = BODIES[surface]
    field = data.draw(st.sampled_from(BODY_FIELDS[surface]), label="field")
    value = data.draw(HOSTILE, label="value")
    headers = {"admin": server.admin, "pk": server.pk}.get(credential, {})
    status, body = server.call(method, fill(server, path), put(fill(server, template), field, value), headers)
    assert_refused_or_fine(field, value, status, body)


# Path parameters, query values and a header ------------------------------------------------------

PATHS = ["GET /api/widgets/{}", "PUT /api/widgets/{}", "DELETE /api/widgets/{}", "GET /api/widgets/{}/config",
         "GET /api/widgets/sessions/{}/messages", "PUT /api/agents/{}", "DELETE /api/keys/{}", "GET /ws/{}",
         "GET /ws/agent/{}"]


@pytest.mark.parametrize("route", PATHS)
@EXAMPLES
@given(value=HOSTILE.filter(lambda v: v not in ("", ".", "..")))
def test_path_parameters(server, route, value):
    method, path = route.split(" ")
    status, body = server.call(method, path.format(escaped(value)), {"widget_title": "T"}, server.admin)
    assert status < 500, (route, value, status, body)
    if "\x00" in value:  # refused, or a route whose pattern (digits) it does not match
        assert (status, body["code"]) in ((400, "VALIDATION_ERROR"), (404, "NOT_FOUND")), (route, value, body)


QUERIES = {"/api/chat/messages": ["tenantId", "sessionId", "userId", "before", "limit"],
           "/api/chat/online-users": ["tenantId"], "/api/widgets": ["page", "limit"]}


@pytest.mark.parametrize("path", QUERIES)
@EXAMPLES
@given(data=st.data())
def test_query_values(server, path, data):
    name = data.draw(st.sampled_from(QUERIES[path]), label="name")
    value = data.draw(HOSTILE, label="value")
    query = {"tenantId": server.tenant_id, "sessionId": server.session_id, name: value}
    status, body = server.call("GET", f"{path}?" + "&".join(f"{k}={escaped(v)}" for k, v in query.items()), None,
                               server.admin)
    assert status < 500, (name, value, status, body)
    if control_problem(value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")):
        assert status == 400 and f"query.{name}" in body["errors"], (name, value, status, body)


def _sendable_header(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return "\r" not in value and "\n" not in value


@EXAMPLES
@given(value=HOSTILE.filter(_sendable_header))
def test_the_tenant_header(server, value):
    status, body = server.call("GET", f"/api/chat/online-users?tenantId={server.tenant_id}", None,
                               {**server.admin, "X-Tenant-ID": value})
    assert status < 500, (value, status, body)
    # What the server reads from those bytes: decoded, without the whitespace around a field value (RFC 9110 5.5).
    seen = value.encode("latin-1").decode("utf-8", "surrogateescape").strip(" \t")
    if control_problem(seen):
        assert status == 400 and body["code"] == "VALIDATION_ERROR", (value, status, body)


# WebSocket frames --------------------------------------------------------------------------------

FRAMES = {
    "visitor message": ("visitor", {"type": "message", "text": "hi", "clientMessageId": "c", "fingerprint": "f",
                                    "userInfo": {"name": "n"}, "domain": "d", "origin": "o", "url": "u",
                                    "referrer": "r", "tenantId": "{tenant_id}", "sessionId": "{session_id}"},
                        ["text", "message", "clientMessageId", "fingerprint", "userInfo.name", "userInfo.email",
                         "userInfo.phone", "domain", "origin", "url", "referrer", "tenantId", "sessionId", "userId",
                         "userHash", "siteId", "siteKey"]),
    "visitor typing": ("visitor", {"type": "typing", "isTyping": True}, ["sessionId"]),
    "visitor sync": ("visitor", {"type": "sync", "since": 999999}, ["sessionId"]),
    "join": ("tokenless", {"type": "join", "siteKey": "{site_key}", "tenantId": "{tenant_id}"},
             ["siteKey", "siteId", "tenantId", "fingerprint", "userId", "userHash", "userInfo.name", "domain",
              "origin", "url", "referrer", "sessionId"]),
    "first frame of a tokenless socket": ("tokenless", {"type": "typing", "siteKey": "{site_key}"},
                                          ["siteKey", "siteId", "tenantId", "sessionId"]),
    "accept_chat": ("agent", {"type": "accept_chat", "sessionId": "{session_id}"}, ["sessionId"]),
    "send_message": ("agent", {"type": "send_message", "sessionId": "{session_id}", "text": "hello",
                               "clientMessageId": "a"}, ["sessionId", "text", "message", "clientMessageId"]),
    "agent typing": ("agent", {"type": "typing", "sessionId": "{session_id}"}, ["sessionId"]),
    "agent sync": ("agent", {"type": "sync", "sessionId": "{session_id}", "since": 999999}, ["sessionId"]),
    "get_online_users": ("agent", {"type": "get_online_users"}, ["tenantId"]),
    "get_waiting_sessions": ("agent", {"type": "get_waiting_sessions"}, ["tenantId"]),
}


@pytest.mark.parametrize("kind", FRAMES)
@EXAMPLES
@given(data=st.data())
def test_frame_fields(server, kind, data):
    socket_kind, template, names = FRAMES[kind]
    field = data.draw(st.sampled_from(names), label="field")
    value = data.draw(HOSTILE, label="value")
    frame = put(fill(server, template), field, value)
    ws = Socket(server.port, server.socket_path(socket_kind))  # one per example: no answer is left for the next
    try:
        answers = ws.exchange(frame)
    finally:
        ws.close()
    errors = [a for a in answers if a.get("type") == "error"]
    assert not [e for e in errors if e["code"] == "INTERNAL_ERROR"], (field, value, errors)
    if must_refuse(field, value):
        assert errors and errors[0]["code"] == "VALIDATION_ERROR", (field, value, answers)
        assert field in errors[0]["errors"] or "frame" in errors[0]["errors"], (field, value, errors)
