"""Tenants and their first admin: what register, create-admin and the demo seed share."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import aiopg

from .. import db
from ..auth import hash_password, new_api_key, random_id


@dataclass(frozen=True)
class NewTenant:
    """A tenant just made, with the secrets shown this once."""

    tenant_id: str
    admin: dict
    publishable_key: str
    secret_key: str


async def create_api_key(conn: aiopg.Connection, tenant_id: str, kind: str, name: str = "") -> tuple[dict, str]:
    """Insert a key; return (its row, the whole key)."""
    key, key_hash, prefix = new_api_key(kind)
    row = await db.fetch_one(
        conn,
        "INSERT INTO api_keys (tenant_id, kind, name, prefix, key_hash, public_key)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " RETURNING id, tenant_id, kind, name, prefix, public_key, created_at, last_used_at, revoked_at",
        (tenant_id, kind, name, prefix, key_hash, key if kind == "publishable" else None),
    )
    return row, key


async def create_tenant_with_admin(pool: aiopg.Pool, *, username: str, email: str, password: str, name: str = "") -> NewTenant:
    """Create a tenant, its admin and one publishable and one secret key, in one transaction.

    Raises psycopg2.errors.UniqueViolation when the username or e-mail is taken.
    """
    password_hash = await hash_password(password)
    tenant_id = random_id("tenant")
    async with db.transaction(pool) as conn:
        await db.execute(
            conn,
            "INSERT INTO tenants (id, name, identity_secret) VALUES (%s, %s, %s)",
            (tenant_id, name or username, secrets.token_hex(32)),
        )
        admin = await db.fetch_one(
            conn,
            "INSERT INTO users (tenant_id, username, email, password) VALUES (%s, %s, %s, %s)"
            " RETURNING id, username, email, tenant_id, created_at",
            (tenant_id, username, email, password_hash),
        )
        _, publishable = await create_api_key(conn, tenant_id, "publishable", "Default publishable key")
        _, secret = await create_api_key(conn, tenant_id, "secret", "Default secret key")
    return NewTenant(tenant_id, admin, publishable, secret)
