"""The admin's tenant settings: GET/PUT /api/tenant, POST /api/tenant/identity-secret."""
from __future__ import annotations

from aiohttp import web

from .. import responses as out
from ..apidoc import describe
from ..auth import authenticate
from ..credentials import ADMIN
from ..http import json_response, read_json
from ..jsonutil import iso
from ..appkeys import DB
from ..schemas import TenantSchema, load_changes
from ..services import tenants

routes = web.RouteTableDef()


def tenant_json(row: dict) -> dict:
    """The tenant's settings (SPEC 12), identity secret included: only its admin sees this."""
    return {
        "id": row["id"], "name": row["name"], "identityVerification": row["identity_verification"],
        "identitySecret": row["identity_secret"], "sessionResume": row["session_resume"], "assignment": row["assignment"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


@routes.get("/api/tenant", name="tenant")
@describe("tenant", auth=(ADMIN,), answers={200: out.TenantAnswer})
async def get_tenant(request: web.Request) -> web.Response:
    """The tenant's settings."""
    principal = await authenticate(request, allow=(ADMIN,))
    row = await tenants.tenant_settings(request.app[DB], principal.tenant_id)
    return json_response({"success": True, "data": {"tenant": tenant_json(row)}})


@routes.put("/api/tenant", name="tenant")
@describe("tenant", auth=(ADMIN,), body=TenantSchema, partial=True, answers={200: out.TenantChanged})
async def update_tenant(request: web.Request) -> web.Response:
    """Change the tenant's name, turn identity verification on or off, or say how sessions resume."""
    principal = await authenticate(request, allow=(ADMIN,))
    changes = load_changes(TenantSchema, await read_json(request))
    row = await tenants.update_tenant_settings(request.app[DB], principal.tenant_id, changes)
    return json_response({"success": True, "message": "Tenant updated successfully", "data": {"tenant": tenant_json(row)}})


@routes.post("/api/tenant/identity-secret", name="tenant_identity_secret")
@describe("tenant", auth=(ADMIN,), answers={200: out.TenantChanged})
async def rotate_identity_secret(request: web.Request) -> web.Response:
    """Replace the identity secret; userHash values made with the old one stop working."""
    principal = await authenticate(request, allow=(ADMIN,))
    row = await tenants.rotate_identity_secret(request.app[DB], principal.tenant_id)
    return json_response({"success": True, "message": "Identity secret rotated", "data": {"tenant": tenant_json(row)}})
