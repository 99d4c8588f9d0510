"""SQL for the figures of the dashboards, each one statement over the stored rows."""
from __future__ import annotations

import aiopg

from .. import db

# Seconds from each visitor message to the next agent or AI reply in the same session; the
# reply's sender is kept so that callers can keep only one agent's replies.
_RESPONSE_TIMES = """
    SELECT EXTRACT(EPOCH FROM r.created_at - v.created_at) AS seconds, r.sender_type, r.sender_id
      FROM messages v
      CROSS JOIN LATERAL (
            SELECT m.created_at, m.sender_type, m.sender_id FROM messages m
             WHERE m.session_id = v.session_id AND m.seq > v.seq AND m.sender_type IN ('agent', 'ai')
             ORDER BY m.seq LIMIT 1) r
     WHERE v.tenant_id = %(tenant_id)s AND v.sender_type = 'visitor'
"""

TENANT_OVERVIEW = f"""
SELECT
    (SELECT count(*) FROM widget_configs WHERE tenant_id = %(tenant_id)s) AS total_widgets,
    (SELECT count(*) FROM widget_configs WHERE tenant_id = %(tenant_id)s AND is_active) AS active_widgets,
    (SELECT count(*) FROM sessions s WHERE s.tenant_id = %(tenant_id)s
        AND EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.session_id)) AS total_chats,
    (SELECT count(*) FROM messages WHERE tenant_id = %(tenant_id)s) AS total_messages,
    (SELECT avg(t.seconds) FROM ({_RESPONSE_TIMES}) t) AS response_seconds,
    (SELECT round(avg(rating), 1) FROM ratings WHERE tenant_id = %(tenant_id)s) AS satisfaction
"""

# Per session an agent took: seconds from the handoff (escalation, or acceptance when the agent
# took the chat from the assistant) to that agent's first reply after accepting.
_FIRST_RESPONSES = """
    SELECT EXTRACT(EPOCH FROM r.first_reply - least(coalesce(s.escalated_at, s.accepted_at), s.accepted_at)) AS seconds
      FROM sessions s
      CROSS JOIN LATERAL (
            SELECT min(m.created_at) AS first_reply FROM messages m
             WHERE m.session_id = s.session_id AND m.sender_type = 'agent' AND m.created_at >= s.accepted_at
               AND m.sender_id = 'agent:' || s.assigned_agent_id) r
     WHERE s.tenant_id = %(tenant_id)s AND s.accepted_at IS NOT NULL AND r.first_reply IS NOT NULL
       AND s.assigned_agent_id = coalesce(%(agent_id)s, s.assigned_agent_id)
"""

# With %(agent_id)s NULL: every agent of the tenant together.
AGENT_FIGURES = f"""
SELECT
    (SELECT count(*) FROM sessions WHERE tenant_id = %(tenant_id)s AND accepted_at IS NOT NULL
        AND assigned_agent_id = coalesce(%(agent_id)s, assigned_agent_id)) AS chats_handled,
    (SELECT count(*) FROM sessions WHERE tenant_id = %(tenant_id)s AND status = 'active' AND NOT ai_mode
        AND assigned_agent_id = coalesce(%(agent_id)s, assigned_agent_id)) AS active_chats,
    (SELECT avg(t.seconds) FROM ({_FIRST_RESPONSES}) t) AS response_seconds,
    (SELECT round(avg(rating), 1) FROM ratings WHERE tenant_id = %(tenant_id)s
        AND agent_id = coalesce(%(agent_id)s, agent_id)) AS satisfaction
"""


async def tenant_overview(conn: aiopg.Connection, tenant_id: str) -> dict:
    """Widget counts, chats, messages, mean response seconds and mean rating of a tenant."""
    return await db.fetch_one(conn, TENANT_OVERVIEW, {"tenant_id": tenant_id})


async def agent_figures(conn: aiopg.Connection, tenant_id: str, agent_id: int | None) -> dict:
    """Chats taken, chats held now, mean first-response seconds and mean rating of one agent (or all)."""
    return await db.fetch_one(conn, AGENT_FIGURES, {"tenant_id": tenant_id, "agent_id": agent_id})
