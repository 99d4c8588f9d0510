"""SQL for admins (the `users` table) and agents."""
from __future__ import annotations

from typing import Any, Mapping

import aiopg

from .. import db
from . import assignments, column_list

ADMIN_COLUMNS = "id, tenant_id, username, email, created_at"
AGENT_COLUMNS = ("id, tenant_id, username, email, full_name, is_active, is_online, last_active, created_at, updated_at,"
                 " max_concurrent_chats")
AGENT_WRITABLE = ("username", "email", "password_hash", "full_name", "is_active", "max_concurrent_chats")


async def admin_for_login(conn: aiopg.Connection, email: str) -> dict | None:
    """The admin with this e-mail (any case), with its password hash."""
    return await db.fetch_one(
        conn, f"SELECT {ADMIN_COLUMNS}, password AS password_hash FROM users WHERE lower(email) = lower(%s)", (email,))


async def agent_for_login(conn: aiopg.Connection, email: str) -> dict | None:
    """The agent with this e-mail (any case), with its password hash."""
    return await db.fetch_one(
        conn, f"SELECT {AGENT_COLUMNS}, password_hash FROM agents WHERE lower(email) = lower(%s)", (email,))


async def admin_by_id(conn: aiopg.Connection, tenant_id: str, user_id: int) -> dict | None:
    """An admin of the tenant."""
    return await db.fetch_one(
        conn, f"SELECT {ADMIN_COLUMNS} FROM users WHERE id = %s AND tenant_id = %s", (user_id, tenant_id))


async def agent_by_id(conn: aiopg.Connection, tenant_id: str, agent_id: int) -> dict | None:
    """An agent of the tenant."""
    return await db.fetch_one(
        conn, f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = %s AND tenant_id = %s", (agent_id, tenant_id))


async def account_usable(conn: aiopg.Connection, table: str, account_id: int, tenant_id: str, issued_at: int) -> bool:
    """True when the admin (`users`) or active agent (`agents`) still exists in that tenant
    and its password has not changed since the token was issued at `issued_at` (epoch seconds)."""
    sql = {
        "users": "SELECT 1 FROM users WHERE id = %s AND tenant_id = %s",
        "agents": "SELECT 1 FROM agents WHERE id = %s AND tenant_id = %s AND is_active",
    }[table] + " AND (password_changed_at IS NULL OR floor(extract(epoch FROM password_changed_at)) <= %s)"
    return await db.fetch_one(conn, sql, (account_id, tenant_id, issued_at)) is not None


async def list_agents(conn: aiopg.Connection, tenant_id: str) -> list[dict]:
    """Every agent of the tenant, oldest first."""
    return await db.fetch_all(conn, f"SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = %s ORDER BY id", (tenant_id,))


async def insert_agent(conn: aiopg.Connection, tenant_id: str, values: Mapping[str, Any]) -> dict:
    """Add an agent; raises UniqueViolation on a taken username or e-mail."""
    names, placeholders = column_list(values, AGENT_WRITABLE)
    return await db.fetch_one(
        conn,
        f"INSERT INTO agents (tenant_id, {names}) VALUES (%(tenant_id)s, {placeholders}) RETURNING {AGENT_COLUMNS}",
        {**values, "tenant_id": tenant_id},
    )


async def update_agent(conn: aiopg.Connection, tenant_id: str, agent_id: int, changes: Mapping[str, Any]) -> dict | None:
    """Change some fields of a tenant's agent; None when there is no such agent."""
    return await db.fetch_one(
        conn,
        f"UPDATE agents SET {assignments(changes, AGENT_WRITABLE)}, updated_at = now()"
        + (", password_changed_at = now()" if "password_hash" in changes else "") +
        f" WHERE id = %(agent_id)s AND tenant_id = %(tenant_id)s RETURNING {AGENT_COLUMNS}",
        {**changes, "agent_id": agent_id, "tenant_id": tenant_id},
    )


async def delete_agent(conn: aiopg.Connection, tenant_id: str, agent_id: int) -> bool:
    """Remove a tenant's agent; False when there is no such agent."""
    return await db.execute(conn, "DELETE FROM agents WHERE id = %s AND tenant_id = %s", (agent_id, tenant_id)) == 1


async def staff_by_id(conn: aiopg.Connection, table: str, member_id: int) -> dict | None:
    """An active agent (`agents`) or an admin (`users`) by id, with its tenant and display name."""
    sql = {
        "agents": "SELECT id, tenant_id, full_name AS name FROM agents WHERE id = %s AND is_active",
        "users": "SELECT id, tenant_id, username AS name FROM users WHERE id = %s",
    }[table]
    return await db.fetch_one(conn, sql, (member_id,))


async def insert_admin(conn: aiopg.Connection, tenant_id: str, username: str, email: str, password_hash: str) -> dict:
    """Add a tenant's admin; raises UniqueViolation on a taken username or e-mail."""
    return await db.fetch_one(
        conn,
        "INSERT INTO users (tenant_id, username, email, password) VALUES (%s, %s, %s, %s)"
        " RETURNING id, username, email, tenant_id, created_at",
        (tenant_id, username, email, password_hash),
    )
