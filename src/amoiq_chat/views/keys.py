"""The tenant's API keys: GET/POST /api/keys, DELETE /api/keys/{id} (revoke)."""
from __future__ import annotations

from aiohttp import web

from .. import responses as out
from ..apidoc import describe
from ..auth import authenticate
from ..credentials import ADMIN
from ..errors import NotFound
from ..http import json_response, path_id, read_json, validate
from ..jsonutil import iso
from ..appkeys import DB
from ..schemas import ApiKeySchema
from ..services import tenants

routes = web.RouteTableDef()


def key_json(row: dict, whole_key: str | None = None) -> dict:
    """A key as listed: secret keys only by prefix; `key` is the whole key when it may be shown."""
    return {
        "id": row["id"], "kind": row["kind"], "name": row["name"], "prefix": row["prefix"],
        "key": whole_key or row["public_key"],
        "created_at": iso(row["created_at"]), "last_used_at": iso(row["last_used_at"]),
        "revoked_at": iso(row["revoked_at"]),
    }


@routes.get("/api/keys", name="keys")
@describe("keys", auth=(ADMIN,), answers={200: out.KeysAnswer})
async def list_keys(request: web.Request) -> web.Response:
    """The tenant's live keys."""
    principal = await authenticate(request, allow=(ADMIN,))
    rows = await tenants.list_api_keys(request.app[DB], principal.tenant_id)
    return json_response({"success": True, "data": {"keys": [key_json(r) for r in rows]}})


@routes.post("/api/keys", name="keys")
@describe("keys", auth=(ADMIN,), body=ApiKeySchema, answers={201: out.KeyAnswer})
async def create_key(request: web.Request) -> web.Response:
    """Create a key; a secret key is in this answer and nowhere else, ever."""
    principal = await authenticate(request, allow=(ADMIN,))
    body = validate(ApiKeySchema, await read_json(request))
    row, key = await tenants.add_api_key(request.app[DB], principal.tenant_id, body["kind"], body["name"])
    return json_response({"success": True, "message": "API key created successfully",
                          "data": {"key": key_json(row, key)}}, status=201)


@routes.delete("/api/keys/{key_id:\\d+}", name="key")
@describe("keys", auth=(ADMIN,), path={"key_id": "integer"}, answers={200: out.KeyAnswer})
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke a key of the tenant."""
    principal = await authenticate(request, allow=(ADMIN,))
    key_id = path_id(request, "key_id")
    if key_id is None:
        raise NotFound(f"API key not found: {request.match_info['key_id']}")
    row = await tenants.revoke_api_key(request.app[DB], principal.tenant_id, key_id)
    return json_response({"success": True, "message": "API key revoked", "data": {"key": key_json(row)}})
