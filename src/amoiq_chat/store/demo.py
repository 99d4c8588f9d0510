"""SQL of the demo page: the demo tenant's widget and a live publishable key."""
from __future__ import annotations

import aiopg

from .. import db


async def demo_embed(conn: aiopg.Connection, admin_email: str) -> dict | None:
    """The oldest active widget of the tenant whose admin has this e-mail, with that tenant's newest live
    publishable key: {site_key, public_key}; None when there is no such tenant, widget or key."""
    return await db.fetch_one(
        conn,
        "SELECT w.site_key, k.public_key FROM users u"
        " JOIN widget_configs w ON w.tenant_id = u.tenant_id AND w.is_active"
        " JOIN LATERAL (SELECT public_key FROM api_keys WHERE tenant_id = u.tenant_id AND kind = 'publishable'"
        "  AND revoked_at IS NULL ORDER BY id DESC LIMIT 1) k ON true"
        " WHERE lower(u.email) = lower(%s) ORDER BY w.id LIMIT 1",
        (admin_email,),
    )
