"""The answers of working flows of the webhook and support routes match the schemas the document gives
them (the fuzzer, with made-up ids, mostly reaches their refusals; these reach every success)."""
from __future__ import annotations

import re

from jsonschema import Draft202012Validator

from amoiq_chat import credentials
from amoiq_chat.appkeys import DB, SETTINGS, SUPPORT, WEBHOOK_WORKER
from amoiq_chat.openapi import build_spec

from .chat_fixtures import make_tenant
from .factories import bearer, expect
from .test_support_routes import new_session
from .webhook_fixtures import add_endpoint, chat_app, receiver, say  # noqa: F401 - fixtures

PARAM = re.compile(r"\{[^}]*\}")


class Document:
    """The app's OpenAPI document; `check` validates an answer against its operation's schema."""

    def __init__(self, app):
        self.spec = build_spec(app)
        self.seen: set[str] = set()

    def check(self, method: str, path: str, status: int, body: dict) -> dict:
        """The body, after asserting that it matches the schema of (method, the path's template, status)."""
        (template,) = [t for t in self.spec["paths"] if re.fullmatch(PARAM.sub("[^/]+", t), path.split("?")[0])
                       and method.lower() in self.spec["paths"][t]]
        answer = self.spec["paths"][template][method.lower()]["responses"][str(status)]
        schema = {"components": self.spec["components"], **answer["content"]["application/json"]["schema"]}
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(body)]
        assert not errors, (method, template, status, errors, body)
        self.seen.add(f"{method} {template}")
        return body


async def test_webhook_answers_match_the_document(aiohttp_client, make_app, redis_server, receiver):
    rec = await receiver([500, 200, 200])
    client, tenant, sid = await chat_app(aiohttp_client, make_app, redis_server[0], webhook_max_attempts=1)
    doc, admin = Document(client.app), bearer(tenant.admin_token)

    async def call(method: str, path: str, status: int, **kwargs) -> dict:
        return doc.check(method, path, status, await expect(await client.request(method, path, headers=admin,
                                                                                  **kwargs), status))

    hook = doc.check("POST", "/api/webhooks", 201, {"success": True, "message": "Webhook created",
                                                    "data": {"webhook": await add_endpoint(client, tenant, rec.url)}})
    assert hook["data"]["webhook"]["secret"].startswith("whsec_")
    base = f"/api/webhooks/{hook['data']['webhook']['id']}"
    listed = await call("GET", "/api/webhooks", 200)
    assert "secret" not in listed["data"]["webhooks"][0]
    assert "secret" not in (await call("GET", base, 200))["data"]["webhook"]
    await call("PUT", base, 200, json={"description": "orders"})
    rotated = await call("POST", base + "/rotate-secret", 200)
    assert rotated["data"]["webhook"]["previousSecretExpiresAt"] is not None
    await say(client.app, tenant, sid, "fails once")
    await client.app[WEBHOOK_WORKER].run_once()
    (dead,) = (await call("GET", base + "/deliveries", 200))["data"]["deliveries"]
    assert (dead["status"], dead["statusCode"]) == ("dead", 500)
    await call("POST", f"{base}/deliveries/{dead['id']}/retry", 202)
    assert (await call("POST", base + "/test", 200))["data"]["delivery"]["ok"] is True
    await call("DELETE", base, 200)
    assert len(doc.seen) == 9


async def test_support_answers_match_the_document(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS], agents=1)
    doc, (agent,) = Document(client.app), tenant.agents

    async def call(method: str, path: str, status: int, token: str | None = None, **kwargs) -> dict:
        headers = bearer(token) if token else {}
        return doc.check(method, path, status, await expect(await client.request(method, path, headers=headers,
                                                                                  **kwargs), status))

    waiting, held = await new_session(client, tenant), await new_session(client, tenant)
    await call("POST", f"/api/widgets/escalate/{tenant.site_key}/{waiting}", 200, json={"reason": "a person, please"})
    place = await call("GET", f"/api/widgets/queue-position/{tenant.site_key}/{waiting}", 200)
    assert place["data"]["position"] == 1
    await call("GET", f"/api/widgets/{tenant.site_key}/queue-stats", 200, tenant.admin_token)
    queue = await call("GET", "/api/agents/waiting-sessions", 200, agent["token"])
    assert [s["sessionId"] for s in queue["sessions"]] == [waiting]
    staff = {"id": agent["id"], "name": agent["name"], "role": credentials.AGENT}
    await client.app[SUPPORT].accept(tenant.id, held, staff)
    chats = await call("GET", "/api/agents/active-chats", 200, agent["token"])
    assert [c["session_id"] for c in chats["data"]] == [held]
    await client.app[SUPPORT].close(tenant.id, held, staff)
    visitor = credentials.issue_token(client.app[SETTINGS], subject=held, role=credentials.VISITOR,
                                      tenant_id=tenant.id, sid=held)
    rated = await call("POST", "/api/chat/rating", 201, visitor, json={"sessionId": held, "rating": 4})
    assert (rated["data"]["rating"], rated["data"]["comment"]) == (4, None)
    assert len(doc.seen) == 6
