"""auth/register, auth/login, auth/agent-login, auth/me (seed 004 shapes, plus tenantId)."""
from __future__ import annotations

from aiohttp import web

from .. import responses as out
from ..apidoc import describe
from ..auth import authenticate
from ..credentials import ADMIN, AGENT, issue_token
from ..http import json_response, read_json, validate
from ..middlewares import client_ip
from ..appkeys import DB, REDIS, SETTINGS
from ..schemas import LoginSchema, RegisterSchema
from ..services import accounts

routes = web.RouteTableDef()


def user_json(row: dict) -> dict:
    """An admin as the seed shows it, plus tenantId."""
    return {"id": row["id"], "username": row["username"], "email": row["email"], "tenantId": row["tenant_id"]}


def agent_json(row: dict) -> dict:
    """An agent as agent-login shows it, plus tenantId."""
    return {**user_json(row), "full_name": row["full_name"]}


@routes.post("/api/auth/register", name="auth_register")
@describe("auth", body=RegisterSchema, answers={201: out.RegisterAnswer}, errors=(409,))
async def register(request: web.Request) -> web.Response:
    """Create a tenant and its admin; answer the token and, this once, the secret key."""
    body = validate(RegisterSchema, await read_json(request))
    tenant = await accounts.register(request.app[DB], **body)
    token = issue_token(request.app[SETTINGS], subject=str(tenant.admin["id"]), role=ADMIN, tenant_id=tenant.tenant_id)
    return json_response({
        "success": True,
        "message": "User registered successfully",
        "data": {
            "user": user_json(tenant.admin),
            "token": token,
            "tenant": {"id": tenant.tenant_id, "publishableKey": tenant.publishable_key, "secretKey": tenant.secret_key},
        },
    }, status=201)


async def _login(request: web.Request, role: str) -> web.Response:
    body = validate(LoginSchema, await read_json(request))
    app = request.app
    log_in = accounts.login_admin if role == ADMIN else accounts.login_agent
    row = await log_in(app[DB], app[REDIS], body["email"], body["password"], client_ip(request))
    token = issue_token(app[SETTINGS], subject=str(row["id"]), role=role, tenant_id=row["tenant_id"])
    if role == ADMIN:
        return json_response({"success": True, "message": "Login successful",
                              "data": {"user": user_json(row), "token": token}})
    return json_response({"success": True, "message": "Agent login successful",
                          "data": {"agent": agent_json(row), "token": token}})


@routes.post("/api/auth/login", name="auth_login")
@describe("auth", body=LoginSchema, answers={200: out.LoginAnswer}, errors=(401, 503))
async def login(request: web.Request) -> web.Response:
    """Log an admin in."""
    return await _login(request, ADMIN)


@routes.post("/api/auth/agent-login", name="auth_agent_login")
@describe("auth", body=LoginSchema, answers={200: out.AgentLoginAnswer}, errors=(401, 403, 503))
async def agent_login(request: web.Request) -> web.Response:
    """Log an agent in."""
    return await _login(request, AGENT)


@routes.get("/api/auth/me", name="auth_me")
@describe("auth", auth=(ADMIN, AGENT), answers={200: out.MeAnswer})
async def me(request: web.Request) -> web.Response:
    """The admin or agent the token belongs to."""
    principal = await authenticate(request, allow=(ADMIN, AGENT))
    row = await accounts.account(request.app[DB], principal.role, principal.tenant_id, int(principal.subject))
    user = agent_json(row) if principal.role == AGENT else user_json(row)
    return json_response({"success": True, "data": {"user": {**user, "role": principal.role}}})
