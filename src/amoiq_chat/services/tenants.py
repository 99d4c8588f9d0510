"""Tenants and their first admin: what register, create-admin and the demo seed share."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import aiopg

from .. import db
from ..credentials import hash_password, new_api_key, random_id
from ..errors import NotFound
from ..store import accounts, api_keys, tenants as store


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
    row = await api_keys.insert_key(conn, tenant_id, kind, name, prefix, key_hash,
                                    key if kind == "publishable" else None)
    return row, key


async def create_tenant_with_admin(pool: aiopg.Pool, *, username: str, email: str, password: str, name: str = "") -> NewTenant:
    """Create a tenant, its admin and one publishable and one secret key, in one transaction.

    Raises psycopg2.errors.UniqueViolation when the username or e-mail is taken.
    """
    password_hash = await hash_password(password)
    tenant_id = random_id("tenant")
    async with db.transaction(pool) as conn:
        await store.insert_tenant(conn, tenant_id, name or username, new_identity_secret())
        admin = await accounts.insert_admin(conn, tenant_id, username, email, password_hash)
        _, publishable = await create_api_key(conn, tenant_id, "publishable", "Default publishable key")
        _, secret = await create_api_key(conn, tenant_id, "secret", "Default secret key")
    return NewTenant(tenant_id, admin, publishable, secret)


# Keys and settings of an existing tenant ---------------------------------------------------

async def list_api_keys(pool: aiopg.Pool, tenant_id: str) -> list[dict]:
    """The tenant's live keys."""
    async with pool.acquire() as conn:
        return await api_keys.list_keys(conn, tenant_id)


async def add_api_key(pool: aiopg.Pool, tenant_id: str, kind: str, name: str) -> tuple[dict, str]:
    """Create a key for the tenant; return (its row, the whole key, shown this once)."""
    async with pool.acquire() as conn:
        return await create_api_key(conn, tenant_id, kind, name)


async def revoke_api_key(pool: aiopg.Pool, tenant_id: str, key_id: int) -> dict:
    """Revoke a live key of the tenant (refused from the next request on, by every process)."""
    async with pool.acquire() as conn:
        row = await api_keys.revoke_key(conn, tenant_id, key_id)
    if row is None:
        raise NotFound(f"API key not found: {key_id}")
    return row


async def tenant_settings(pool: aiopg.Pool, tenant_id: str) -> dict:
    """The tenant's settings row."""
    async with pool.acquire() as conn:
        row = await store.tenant_by_id(conn, tenant_id)
    if row is None:
        raise NotFound("Tenant not found")
    return row


async def update_tenant_settings(pool: aiopg.Pool, tenant_id: str, changes: dict) -> dict:
    """Change the tenant's name, identity verification flag or session resume rule."""
    async with pool.acquire() as conn:
        row = await store.update_tenant(conn, tenant_id, changes)
    if row is None:
        raise NotFound("Tenant not found")
    return row


async def rotate_identity_secret(pool: aiopg.Pool, tenant_id: str) -> dict:
    """Give the tenant a new identity secret (userHash values made with the old one stop working)."""
    async with pool.acquire() as conn:
        row = await store.set_identity_secret(conn, tenant_id, new_identity_secret())
    if row is None:
        raise NotFound("Tenant not found")
    return row


def new_identity_secret() -> str:
    """A random HMAC key for userHash."""
    return secrets.token_hex(32)
