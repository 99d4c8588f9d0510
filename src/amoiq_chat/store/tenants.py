"""SQL for tenant settings."""
from __future__ import annotations

from typing import Any, Mapping

import aiopg

from .. import db
from . import assignments

TENANT_COLUMNS = "id, name, identity_verification, identity_secret, session_resume, assignment, created_at, updated_at"
TENANT_WRITABLE = ("name", "identity_verification", "session_resume", "assignment")


async def tenant_by_id(conn: aiopg.Connection, tenant_id: str) -> dict | None:
    """The tenant's settings row."""
    return await db.fetch_one(conn, f"SELECT {TENANT_COLUMNS} FROM tenants WHERE id = %s", (tenant_id,))


async def update_tenant(conn: aiopg.Connection, tenant_id: str, changes: Mapping[str, Any]) -> dict | None:
    """Change the tenant's name, identity verification flag or session resume rule."""
    return await db.fetch_one(
        conn,
        f"UPDATE tenants SET {assignments(changes, TENANT_WRITABLE)}, updated_at = now()"
        f" WHERE id = %(tenant_id)s RETURNING {TENANT_COLUMNS}",
        {**changes, "tenant_id": tenant_id},
    )


async def set_identity_secret(conn: aiopg.Connection, tenant_id: str, secret: str) -> dict | None:
    """Replace the tenant's identity secret."""
    return await db.fetch_one(
        conn,
        f"UPDATE tenants SET identity_secret = %s, updated_at = now() WHERE id = %s RETURNING {TENANT_COLUMNS}",
        (secret, tenant_id),
    )


async def insert_tenant(conn: aiopg.Connection, tenant_id: str, name: str, identity_secret: str) -> None:
    """Add a tenant."""
    await db.execute(conn, "INSERT INTO tenants (id, name, identity_secret) VALUES (%s, %s, %s)",
                     (tenant_id, name, identity_secret))


async def any_tenant(conn: aiopg.Connection) -> bool:
    """True when at least one tenant exists."""
    return await db.fetch_one(conn, "SELECT 1 FROM tenants LIMIT 1") is not None
