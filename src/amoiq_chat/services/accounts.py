"""Admins and agents: register, log in (with a per-account and address lockout in Redis), manage agents."""
from __future__ import annotations

from typing import Any, Mapping

import aiopg
import redis.asyncio as aioredis
from psycopg2.errors import UniqueViolation
from redis.exceptions import RedisError

from ..credentials import hash_password, verify_password
from ..errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from ..store import accounts as store
from .lockout import check_lockout, clear_failures, record_failure
from .tenants import NewTenant, create_tenant_with_admin

BAD_LOGIN = "Invalid email or password"


def conflict(exc: UniqueViolation) -> Conflict:
    """Name the field a unique index refused (username or email)."""
    constraint = getattr(exc.diag, "constraint_name", "") or ""
    field = "username" if "username" in constraint else "email"
    return Conflict(f"That {field} is already registered", errors={field: "already registered"})


async def register(pool: aiopg.Pool, *, username: str, email: str, password: str) -> NewTenant:
    """Create a tenant, its admin and its first two keys; 409 when username or e-mail is taken."""
    try:
        return await create_tenant_with_admin(pool, username=username, email=email, password=password)
    except UniqueViolation as exc:
        raise conflict(exc) from None


async def _login(pool: aiopg.Pool, redis: aioredis.Redis, role: str, email: str, password: str, address: str) -> dict:
    try:
        return await _checked_login(pool, redis, role, email, password, address)
    except RedisError:
        # Without the failure count there is no brute-force protection: refuse rather than guess.
        raise ServiceUnavailable("Login is unavailable for a moment, please try again") from None


async def _checked_login(pool: aiopg.Pool, redis: aioredis.Redis, role: str, email: str, password: str,
                         address: str) -> dict:
    await check_lockout(redis, role, email, address)
    async with pool.acquire() as conn:
        find = store.admin_for_login if role == "admin" else store.agent_for_login
        row = await find(conn, email)
    # An unknown e-mail still costs one argon2 verification (of a dummy hash): same time, same answer.
    if not await verify_password(row["password_hash"] if row else None, password):
        await record_failure(redis, role, email, address)
        raise Unauthorized(BAD_LOGIN)
    await clear_failures(redis, role, email, address)
    row.pop("password_hash")
    return row


async def login_admin(pool: aiopg.Pool, redis: aioredis.Redis, email: str, password: str, address: str) -> dict:
    """The admin with these credentials, or 401 (429 while `address` is locked out)."""
    return await _login(pool, redis, "admin", email, password, address)


async def login_agent(pool: aiopg.Pool, redis: aioredis.Redis, email: str, password: str, address: str) -> dict:
    """The agent with these credentials, or 401 (429 while `address` is locked out, 403 when deactivated)."""
    agent = await _login(pool, redis, "agent", email, password, address)
    if not agent["is_active"]:
        raise Forbidden("This agent account is deactivated")
    return agent


async def account(pool: aiopg.Pool, role: str, tenant_id: str, account_id: int) -> dict:
    """The admin or agent a token names, or 401 when it no longer exists."""
    async with pool.acquire() as conn:
        find = store.admin_by_id if role == "admin" else store.agent_by_id
        row = await find(conn, tenant_id, account_id)
    if row is None:
        raise Unauthorized("This account no longer exists")
    return row


# Agents ------------------------------------------------------------------------------------

async def _agent_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(fields)
    if "password" in values:
        values["password_hash"] = await hash_password(values.pop("password"))
    return values


def agent_not_found(agent_id: int) -> NotFound:
    """404 for an agent id that is not one of the tenant's."""
    return NotFound(f"Agent not found: {agent_id}", code="USER_NOT_FOUND")


async def list_agents(pool: aiopg.Pool, tenant_id: str) -> list[dict]:
    """The tenant's agents."""
    async with pool.acquire() as conn:
        return await store.list_agents(conn, tenant_id)


async def create_agent(pool: aiopg.Pool, tenant_id: str, fields: Mapping[str, Any]) -> dict:
    """Add an agent to the tenant; 409 when username or e-mail is taken."""
    values = await _agent_values(fields)
    try:
        async with pool.acquire() as conn:
            return await store.insert_agent(conn, tenant_id, values)
    except UniqueViolation as exc:
        raise conflict(exc) from None


async def update_agent(pool: aiopg.Pool, tenant_id: str, agent_id: int, changes: Mapping[str, Any]) -> dict:
    """Change a tenant's agent; 404 for another tenant's, 409 for a taken username or e-mail."""
    values = await _agent_values(changes)
    try:
        async with pool.acquire() as conn:
            row = await store.update_agent(conn, tenant_id, agent_id, values)
    except UniqueViolation as exc:
        raise conflict(exc) from None
    if row is None:
        raise agent_not_found(agent_id)
    return row


async def delete_agent(pool: aiopg.Pool, tenant_id: str, agent_id: int) -> None:
    """Remove a tenant's agent (their tokens stop working at once); 404 for another tenant's."""
    async with pool.acquire() as conn:
        if not await store.delete_agent(conn, tenant_id, agent_id):
            raise agent_not_found(agent_id)

