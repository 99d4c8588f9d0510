"""SQL for widget configurations."""
from __future__ import annotations

from typing import Any, Mapping

import aiopg

from .. import db
from . import assignments, column_list

WIDGET_COLUMNS = ("id, tenant_id, site_key, business_name, widget_title, welcome_message, primary_color,"
                  " secondary_color, position, enable_prechat_form, prechat_fields, allowed_domains, faq,"
                  " created_at, updated_at, is_active")
WIDGET_WRITABLE = ("business_name", "widget_title", "welcome_message", "primary_color", "secondary_color",
                   "position", "enable_prechat_form", "prechat_fields", "allowed_domains", "faq", "is_active")
JSON_COLUMNS = frozenset({"prechat_fields", "allowed_domains", "faq"})


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: db.jsonb(value) if name in JSON_COLUMNS else value for name, value in values.items()}


async def insert_widget(conn: aiopg.Connection, tenant_id: str, user_id: int | None, site_key: str,
                        values: Mapping[str, Any]) -> dict:
    """Store a new widget; columns not given take their defaults."""
    names, placeholders = column_list(values, WIDGET_WRITABLE)
    extra = (", " + names, ", " + placeholders) if values else ("", "")
    return await db.fetch_one(
        conn,
        f"INSERT INTO widget_configs (tenant_id, user_id, site_key{extra[0]})"
        f" VALUES (%(tenant_id)s, %(user_id)s, %(site_key)s{extra[1]}) RETURNING {WIDGET_COLUMNS}",
        {**_params(values), "tenant_id": tenant_id, "user_id": user_id, "site_key": site_key},
    )


async def widget_by_site_key(conn: aiopg.Connection, site_key: str) -> dict | None:
    """A widget of any tenant (callers compare its tenant_id with the credential's)."""
    return await db.fetch_one(conn, f"SELECT {WIDGET_COLUMNS} FROM widget_configs WHERE site_key = %s", (site_key,))


async def list_widgets(conn: aiopg.Connection, tenant_id: str, limit: int, offset: int) -> list[dict]:
    """One page of the tenant's widgets, newest first."""
    return await db.fetch_all(
        conn,
        f"SELECT {WIDGET_COLUMNS} FROM widget_configs WHERE tenant_id = %s ORDER BY id DESC LIMIT %s OFFSET %s",
        (tenant_id, limit, offset),
    )


async def update_widget(conn: aiopg.Connection, tenant_id: str, site_key: str, changes: Mapping[str, Any]) -> dict | None:
    """Change some fields of a tenant's widget; None when the tenant has no such widget."""
    return await db.fetch_one(
        conn,
        f"UPDATE widget_configs SET {assignments(changes, WIDGET_WRITABLE)}, updated_at = now()"
        f" WHERE site_key = %(site_key)s AND tenant_id = %(tenant_id)s RETURNING {WIDGET_COLUMNS}",
        {**_params(changes), "site_key": site_key, "tenant_id": tenant_id},
    )


async def delete_widget(conn: aiopg.Connection, tenant_id: str, site_key: str) -> bool:
    """Remove a tenant's widget (its sessions and messages go with it); False when there is none."""
    return await db.execute(
        conn, "DELETE FROM widget_configs WHERE site_key = %s AND tenant_id = %s", (site_key, tenant_id)) == 1


async def business_name(conn: aiopg.Connection, site_key: str | None) -> str | None:
    """The business name of a widget (None without a widget, or when it is gone)."""
    if not site_key:
        return None
    row = await db.fetch_one(conn, "SELECT business_name FROM widget_configs WHERE site_key = %s", (site_key,))
    return row["business_name"] if row else None
