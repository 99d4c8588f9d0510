"""Request authentication: a request's credential -> its `Principal` (see `credentials.py`)."""
from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit

from aiohttp import web

from .appkeys import DB, PRINCIPAL, SETTINGS
from .credentials import ADMIN, PUBLISHABLE_KEY, SECRET_KEY, STAFF_ROLES, Principal, hash_api_key, verify_token
from .db import as_id
from .errors import Forbidden, InvalidApiKey, InvalidToken, Unauthorized
from .store.accounts import account_usable
from .store.api_keys import key_for_use


def bearer(request: web.Request) -> str | None:
    """The credential of a REST request: `Authorization: Bearer x` only (a token in a URL ends up in
    logs and browser history; the socket routes, which browsers cannot give headers, read `?token=`)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        return value.strip()
    return None


def check_staff_origin(request: web.Request) -> None:
    """Refuse a staff socket opened from a page of another site: an `Origin`, when sent, must be one of
    CORS_ORIGINS ("*" allows any) or this server's own host (whatever the scheme a proxy in front ends)."""
    origin = request.headers.get("Origin")
    if not origin:
        return
    allowed = {o.lower().rstrip("/") for o in request.app[SETTINGS].cors_origins}
    given = origin.lower().rstrip("/")
    if "*" in allowed or given in allowed or urlsplit(given).netloc == (request.host or "").lower():
        return
    raise Forbidden("This origin may not open an agent socket", errors={"origin": "not allowed"})


async def principal_for_key(request: web.Request, key: str) -> Principal:
    """Look an API key up (revocation takes effect at once, on every process)."""
    async with request.app[DB].acquire() as conn:
        row = await key_for_use(conn, hash_api_key(key))
    if row is None:
        raise InvalidApiKey()
    role = PUBLISHABLE_KEY if row["kind"] == "publishable" else SECRET_KEY
    return Principal(role=role, tenant_id=row["tenant_id"], subject=str(row["id"]))


async def check_account(request: web.Request, principal: Principal) -> None:
    """Refuse the token of an admin or agent that was deleted, an agent that was deactivated,
    or a token issued before the account's password changed."""
    account_id = as_id(principal.subject)
    if account_id is not None:
        async with request.app[DB].acquire() as conn:
            table = "users" if principal.role == ADMIN else "agents"
            if await account_usable(conn, table, account_id, principal.tenant_id, int(principal.claims["iat"])):
                return
    raise InvalidToken("This account no longer exists or is deactivated")


async def authenticate(request: web.Request, allow: Iterable[str]) -> Principal:
    """Resolve the request's credential and check its role is one of `allow` (else 401/403)."""
    allowed = tuple(allow)
    token = bearer(request)
    if not token:
        raise Unauthorized()
    if token.startswith(("pk_", "sk_")):
        principal = await principal_for_key(request, token)
    else:
        principal = verify_token(request.app[SETTINGS], token)
    if principal.role in STAFF_ROLES:
        await check_account(request, principal)
    if principal.role not in allowed:
        raise Forbidden("This credential may not use this route")
    request[PRINCIPAL] = principal
    return principal
