"""The admin's agents: GET/POST /api/agents, PUT/DELETE /api/agents/{id}; GET /api/agents/stats."""
from __future__ import annotations

from aiohttp import web

from .. import responses as out
from ..apidoc import describe
from ..auth import authenticate
from ..credentials import ADMIN, AGENT, SECRET_KEY
from ..http import json_response, path_id, read_json, validate
from ..jsonutil import iso
from ..appkeys import BUS, DB
from ..schemas import AgentSchema, load_changes
from ..services import accounts, chat, stats

routes = web.RouteTableDef()


def agent_json(row: dict) -> dict:
    """An agent as the admin sees it."""
    return {
        "id": row["id"], "username": row["username"], "email": row["email"], "full_name": row["full_name"],
        "is_active": row["is_active"], "is_online": row["is_online"], "last_active": iso(row["last_active"]),
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
        "max_concurrent_chats": row["max_concurrent_chats"],
    }


def agent_id(request: web.Request) -> int:
    """The {id} of the path; an id that cannot exist is 404, like another tenant's."""
    value = path_id(request, "agent_id")
    if value is None:
        raise accounts.agent_not_found(request.match_info["agent_id"])
    return value


@routes.get("/api/agents/stats", name="agent_stats")
@describe("agents", auth=(ADMIN, AGENT, SECRET_KEY), answers={200: out.AgentStatsAnswer})
async def agent_stats(request: web.Request) -> web.Response:
    """An agent's own figures; with an admin token or secret key, all the tenant's agents'."""
    principal = await authenticate(request, allow=(ADMIN, AGENT, SECRET_KEY))
    only = int(principal.subject) if principal.role == AGENT else None
    figures = await stats.agent_stats(request.app[DB], principal.tenant_id, only)
    return json_response({"success": True, "data": figures})


@routes.get("/api/agents", name="agents")
@describe("agents", auth=(ADMIN,), answers={200: out.AgentsAnswer})
async def list_agents(request: web.Request) -> web.Response:
    """The tenant's agents."""
    principal = await authenticate(request, allow=(ADMIN,))
    rows = await accounts.list_agents(request.app[DB], principal.tenant_id)
    return json_response({"success": True, "data": {"agents": [agent_json(r) for r in rows]}})


@routes.post("/api/agents", name="agents")
@describe("agents", auth=(ADMIN,), body=AgentSchema, answers={201: out.AgentAnswer}, errors=(409,))
async def create_agent(request: web.Request) -> web.Response:
    """Add an agent to the tenant."""
    principal = await authenticate(request, allow=(ADMIN,))
    body = validate(AgentSchema, await read_json(request))
    row = await accounts.create_agent(request.app[DB], principal.tenant_id, body)
    return json_response({"success": True, "message": "Agent created successfully",
                          "data": {"agent": agent_json(row)}}, status=201)


@routes.put("/api/agents/{agent_id:\\d+}", name="agent")
@describe("agents", auth=(ADMIN,), body=AgentSchema, partial=True, path={"agent_id": "integer"},
          answers={200: out.AgentAnswer}, errors=(409,))
async def update_agent(request: web.Request) -> web.Response:
    """Change some of an agent's fields (a new password, is_active false to lock them out)."""
    principal = await authenticate(request, allow=(ADMIN,))
    changes = load_changes(AgentSchema, await read_json(request))
    row = await accounts.update_agent(request.app[DB], principal.tenant_id, agent_id(request), changes)
    if not row["is_active"] or "password" in changes:  # its open sockets go, on every process
        await chat.revoke_agent(request.app[BUS], row["id"])
    return json_response({"success": True, "message": "Agent updated successfully", "data": {"agent": agent_json(row)}})


@routes.delete("/api/agents/{agent_id:\\d+}", name="agent")
@describe("agents", auth=(ADMIN,), path={"agent_id": "integer"}, answers={200: out.Done})
async def delete_agent(request: web.Request) -> web.Response:
    """Remove an agent of the tenant."""
    principal = await authenticate(request, allow=(ADMIN,))
    await accounts.delete_agent(request.app[DB], principal.tenant_id, agent_id(request))
    await chat.revoke_agent(request.app[BUS], agent_id(request))
    return json_response({"success": True, "message": "Agent deleted successfully"})
