"""SQL for API keys (secret keys stored only as a hash)."""
from __future__ import annotations

import aiopg

from .. import db

KEY_COLUMNS = "id, tenant_id, kind, name, prefix, public_key, created_at, last_used_at, revoked_at"


async def insert_key(conn: aiopg.Connection, tenant_id: str, kind: str, name: str, prefix: str,
                     key_hash: str, public_key: str | None) -> dict:
    """Store a new key (`public_key` only for publishable keys)."""
    return await db.fetch_one(
        conn,
        "INSERT INTO api_keys (tenant_id, kind, name, prefix, key_hash, public_key)"
        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {KEY_COLUMNS}",
        (tenant_id, kind, name, prefix, key_hash, public_key),
    )


async def list_keys(conn: aiopg.Connection, tenant_id: str) -> list[dict]:
    """The tenant's keys that are not revoked, oldest first."""
    return await db.fetch_all(
        conn, f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = %s AND revoked_at IS NULL ORDER BY id",
        (tenant_id,))


async def revoke_key(conn: aiopg.Connection, tenant_id: str, key_id: int) -> dict | None:
    """Revoke a live key of the tenant; None when there is none with that id."""
    return await db.fetch_one(
        conn,
        f"UPDATE api_keys SET revoked_at = now() WHERE id = %s AND tenant_id = %s AND revoked_at IS NULL"
        f" RETURNING {KEY_COLUMNS}",
        (key_id, tenant_id),
    )


async def key_for_use(conn: aiopg.Connection, key_hash: str) -> dict | None:
    """The live key with this hash; marks it used (written at most once a minute per key)."""
    return await db.fetch_one(
        conn,
        "WITH k AS (SELECT id, tenant_id, kind, last_used_at FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL),"
        " touched AS (UPDATE api_keys SET last_used_at = now() WHERE id = (SELECT id FROM k)"
        "  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute'))"
        " SELECT id, tenant_id, kind FROM k",
        (key_hash,),
    )
