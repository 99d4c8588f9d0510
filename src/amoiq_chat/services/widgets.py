"""Widgets of a tenant: create, read, change, delete, and the public configuration."""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import aiopg

from ..credentials import random_id
from ..errors import Forbidden, NotFound
from ..store import widgets as store
from . import stats

MAX_SITE_KEY = 255
# The public config of a widget is read on every page view of every visitor, and the widget
# of every HTTP message and socket join with a siteKey. A process keeps a widget's row this
# long (the config's answer says `max-age=60` to browsers anyway); a change made through this
# process is seen at once, one made through another process within this time.
PUBLIC_TTL = 5.0
PUBLIC_CACHED_MAX = 10_000  # widgets kept at once; when full, the cache starts again empty
DEFAULT_PORTS = {"http": 80, "https": 443}  # an Origin without a port uses its scheme's


class PublicWidgets:
    """Widget rows by siteKey (the public config, HTTP messages, socket joins), each kept PUBLIC_TTL
    seconds. Only widgets that exist are kept (unknown siteKeys are asked of the database each time)."""

    def __init__(self, ttl: float = PUBLIC_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._rows: dict[str, tuple[float, dict]] = {}

    def get(self, site_key: str) -> dict | None:
        """The kept row, while it is fresh."""
        kept = self._rows.get(site_key)
        if kept is None:
            return None
        if kept[0] <= self.clock():
            del self._rows[site_key]
            return None
        return kept[1]

    def keep(self, row: dict) -> None:
        """Keep a row read from the database."""
        if len(self._rows) >= PUBLIC_CACHED_MAX:
            self._rows.clear()
        self._rows[row["site_key"]] = (self.clock() + self.ttl, row)

    async def lookup(self, conn: aiopg.Connection, site_key: str) -> dict | None:
        """The widget's row (any tenant's, active or not): kept, or read from the database and kept."""
        row = self.get(site_key)
        if row is None and len(site_key) <= MAX_SITE_KEY:
            row = await store.widget_by_site_key(conn, site_key)
            if row is not None:
                self.keep(row)
        return row

    def forget(self, site_key: str) -> None:
        """Drop a widget this process changed or deleted."""
        self._rows.pop(site_key, None)


def widget_not_found(site_key: str) -> NotFound:
    """404 WIDGET_NOT_FOUND with the seed's message."""
    return NotFound(f"Widget not found for site key: {site_key[:MAX_SITE_KEY]}", code="WIDGET_NOT_FOUND")


async def _owned(conn: aiopg.Connection, tenant_id: str, site_key: str) -> dict:
    """The widget if the tenant owns it; 404 when unknown, 403 when another tenant's."""
    row = await store.widget_by_site_key(conn, site_key) if len(site_key) <= MAX_SITE_KEY else None
    if row is None:
        raise widget_not_found(site_key)
    if row["tenant_id"] != tenant_id:
        raise Forbidden("This widget belongs to another tenant")
    return row


async def create_widget(pool: aiopg.Pool, tenant_id: str, user_id: int | None, fields: Mapping[str, Any]) -> dict:
    """Store a new widget with a fresh site key."""
    async with pool.acquire() as conn:
        return await store.insert_widget(conn, tenant_id, user_id, random_id("widget"), fields)


async def get_widget(pool: aiopg.Pool, tenant_id: str, site_key: str) -> dict:
    """One of the tenant's widgets."""
    async with pool.acquire() as conn:
        return await _owned(conn, tenant_id, site_key)


async def list_widgets(pool: aiopg.Pool, tenant_id: str, page: int, limit: int) -> tuple[list[dict], dict]:
    """One page of the tenant's widgets and the tenant's stats."""
    async with pool.acquire() as conn:
        rows = await store.list_widgets(conn, tenant_id, limit, (page - 1) * limit)
    return rows, await stats.tenant_stats(pool, tenant_id)


async def update_widget(pool: aiopg.Pool, cache: PublicWidgets, tenant_id: str, site_key: str,
                        changes: Mapping[str, Any]) -> dict:
    """Change some fields of one of the tenant's widgets (its public config shows it at once here)."""
    async with pool.acquire() as conn:
        row = await store.update_widget(conn, tenant_id, site_key, changes) if len(site_key) <= MAX_SITE_KEY else None
        if row is None:
            await _owned(conn, tenant_id, site_key)  # says 404 or 403
            raise widget_not_found(site_key)  # deleted meanwhile
    cache.forget(site_key)
    return row


async def delete_widget(pool: aiopg.Pool, cache: PublicWidgets, tenant_id: str, site_key: str) -> None:
    """Delete one of the tenant's widgets, with its conversations (and its public config, at once here)."""
    async with pool.acquire() as conn:
        if len(site_key) > MAX_SITE_KEY or not await store.delete_widget(conn, tenant_id, site_key):
            await _owned(conn, tenant_id, site_key)
            raise widget_not_found(site_key)
    cache.forget(site_key)


async def public_widget(pool: aiopg.Pool, cache: PublicWidgets, site_key: str, origin: str | None) -> dict:
    """An active widget for the page embedding it; 404 unknown or inactive, 403 from a foreign origin."""
    row = cache.get(site_key)
    if row is None:
        async with pool.acquire() as conn:
            row = await cache.lookup(conn, site_key)
    if row is None or not row["is_active"]:
        raise widget_not_found(site_key)
    if origin and not origin_allowed(row["allowed_domains"], origin):
        raise Forbidden("This widget is not allowed on that website")
    return row


def origin_allowed(allowed_domains: list[str], origin: str | None) -> bool:
    """True when the widget allows any domain, or the Origin's host is listed (`*.x` = subdomains of x);
    an entry with a port (`localhost:3000`) allows that port only, one without allows any."""
    if not allowed_domains:
        return True
    parts = urlsplit(origin or "")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return False
    if not host:
        return False
    for entry in (str(d).lower() for d in allowed_domains):
        domain, _, entry_port = entry.partition(":")
        if entry_port and int(entry_port) != port:
            continue
        if host == domain or (domain.startswith("*.") and host.endswith(domain[1:])):
            return True
    return False
