"""The demo tenant that the first `make run` creates, so a newcomer can try every route."""
from __future__ import annotations

import secrets

import aiopg

from .. import db
from ..credentials import hash_password, random_id
from ..store import accounts, demo as store, tenants, widgets
from .tenants import create_tenant_with_admin

DEMO_ADMIN_EMAIL = "admin@demo.local"  # also how the demo page finds the demo tenant

DEMO_FAQ = [
    {"keywords": ["price", "pricing", "cost"], "answer": "Our plans start at $10 a month; see the pricing page for details."},
    {"keywords": ["hours", "open"], "answer": "We answer chats from 9:00 to 17:00, Monday to Friday."},
]


async def seed_if_empty(pool: aiopg.Pool) -> str | None:
    """Create demo tenant, admin, agent and widget when there is no tenant; return a summary."""
    async with pool.acquire() as conn:
        if await tenants.any_tenant(conn):
            return None
    admin_password = secrets.token_urlsafe(12)
    agent_password = secrets.token_urlsafe(12)
    tenant = await create_tenant_with_admin(pool, username="demo_admin", email=DEMO_ADMIN_EMAIL,
                                            password=admin_password, name="Demo Company")
    agent_hash = await hash_password(agent_password)
    site_key = random_id("widget")
    async with db.transaction(pool) as conn:
        await accounts.insert_agent(conn, tenant.tenant_id, {"username": "demo_agent", "email": "agent@demo.local",
                                                             "password_hash": agent_hash, "full_name": "Demo Agent"})
        await widgets.insert_widget(conn, tenant.tenant_id, tenant.admin["id"], site_key,
                                    {"business_name": "Demo Company", "widget_title": "Support Chat", "faq": DEMO_FAQ})
    return "\n".join([
        "",
        "Demo tenant created (shown this once):",
        f"  tenant id        {tenant.tenant_id}",
        f"  admin            {DEMO_ADMIN_EMAIL} / {admin_password}   (POST /api/auth/login)",
        f"  agent            agent@demo.local / {agent_password}   (POST /api/auth/agent-login)",
        f"  widget siteKey   {site_key}   (GET /api/widgets/{site_key}/config)",
        f"  publishable key  {tenant.publishable_key}",
        f"  secret key       {tenant.secret_key}",
        "",
    ])


async def demo_embed(pool: aiopg.Pool) -> dict | None:
    """The demo widget's site key and a publishable key of its tenant (None without the demo tenant)."""
    async with pool.acquire() as conn:
        return await store.demo_embed(conn, DEMO_ADMIN_EMAIL)
