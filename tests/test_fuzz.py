"""Schemathesis against a live server, with a valid credential of each role in turn: no 500, no
status the document does not list, no answer that does not match its schema (issue 17)."""
from __future__ import annotations

import json
from typing import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from amoiq_chat.app import create_app
from amoiq_chat.openapi import build_spec
from amoiq_chat.settings import Settings

from .chat_fixtures import ServerProcess
from .factories import unique

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
# Examples per operation; each is sent once per role (5 credentials and none) where a credential
# is needed. About 35 operations: ~1,000 requests, a minute or two on a busy 2-core machine.
EXAMPLES = 8


@pytest.fixture(scope="module")
def fuzz_server(settings, tmp_path_factory):
    """A server process of its own (generous rate limits: the fuzzer is one client IP)."""
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    server = ServerProcess(settings, log=log, LOG_LEVEL="INFO")
    try:
        yield server.wait()
    finally:
        logged = server.stop()
        assert "Traceback" not in logged, logged[-5000:]


def _post(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.post(url, json=body, headers=headers, timeout=30)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


@pytest.fixture(scope="module")
def credentials(fuzz_server) -> Iterator[dict[str, str | None]]:
    """One valid credential of each role, of one tenant that has a widget and a session; at the end,
    none of them may be in the server's log."""
    base = fuzz_server.url + "/api"
    admin_email, agent_email = unique("fuzz") + "@example.com", unique("fuzzagent") + "@example.com"
    registered = _post(base + "/auth/register", {"username": unique("fuzzadmin"), "email": admin_email,
                                                 "password": "fuzz-password-1"})["data"]
    admin, tenant = registered["token"], registered["tenant"]
    _post(base + "/agents", {"username": unique("fuzzagent"), "email": agent_email, "password": "fuzz-password-2",
                             "full_name": "Fuzz Agent"}, admin)
    agent = _post(base + "/auth/agent-login", {"email": agent_email, "password": "fuzz-password-2"})["data"]["token"]
    site_key = _post(base + "/widgets", {"business_name": "Fuzz"}, admin)["data"]["widget"]["site_key"]
    visitor = _post(base + "/chat/anonymous-token", {"tenantId": tenant["id"], "siteKey": site_key},
                    tenant["publishableKey"])["token"]
    used = {"admin": admin, "agent": agent, "publishable key": tenant["publishableKey"],
            "secret key": tenant["secretKey"], "visitor": visitor, "none": None}
    yield used
    logged = fuzz_server.log.read_text(errors="replace")  # every request of the run, with these credentials
    for role, credential in used.items():
        assert credential is None or credential not in logged, f"the {role} credential reached the logs"
    for password in ("fuzz-password-1", "fuzz-password-2"):
        assert password not in logged


def document() -> dict:
    """The document as the server builds it (made here to list the operations before the server starts)."""
    app = create_app(Settings(database_url="postgresql://unused/unused", redis_url="redis://unused",
                              jwt_secret="unused-" + "x" * 32))
    return build_spec(app)


DOCUMENT = document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
# Public operations are fuzzed without a credential only (a credential changes nothing there, and
# the auth routes hash a password per request).
SECURED = {f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items()
           for method, op in item.items() if op.get("security")}


def test_the_server_serves_the_document_fuzzed_here(fuzz_server):
    assert requests.get(fuzz_server.url + "/api/openapi.json", timeout=30).json() == json.loads(json.dumps(DOCUMENT))


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_every_route_with_every_role(label, credentials, fuzz_server):
    operation = OPERATIONS[label]
    roles = credentials if label in SECURED else {"none": None}

    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)))
    def fuzz(case):
        for role, credential in roles.items():
            headers = {"Authorization": f"Bearer {credential}"} if credential else {}
            try:
                case.call_and_validate(base_url=fuzz_server.url, headers=headers, checks=CHECKS, timeout=30)
            except AssertionError as exc:
                raise AssertionError(f"as {role}: {exc}") from None

    fuzz()
