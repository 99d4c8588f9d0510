"""SQL of the support workflow: the assistant's context, escalation, the queue, assignment, closing, ratings."""
from __future__ import annotations

import aiopg

from .. import db

STATE_COLUMNS = "session_id, tenant_id, site_key, status, ai_mode, assigned_agent_id, escalated_at, accepted_at"


def _returning(prefix: str = "s.") -> str:
    return ", ".join(prefix + c.strip() for c in STATE_COLUMNS.split(","))


async def session_state(conn: aiopg.Connection, session_id: str) -> dict | None:
    """A session's workflow state (any tenant: callers compare tenant_id)."""
    return await db.fetch_one(conn, f"SELECT {STATE_COLUMNS} FROM sessions WHERE session_id = %s", (session_id,))


# The assistant ------------------------------------------------------------------------------

async def reply_context(conn: aiopg.Connection, session_id: str, seq: int) -> dict | None:
    """What the assistant needs to answer the visitor message `seq`: the session's state, its
    widget's welcome message, FAQ and name, and whether that message is the visitor's first."""
    return await db.fetch_one(
        conn,
        "SELECT s.status, s.ai_mode, s.tenant_id, w.welcome_message, w.faq, w.business_name,"
        " NOT EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.session_id AND m.seq < %s"
        "             AND m.sender_type = 'visitor') AS first"
        " FROM sessions s LEFT JOIN widget_configs w ON w.site_key = s.site_key WHERE s.session_id = %s",
        (seq, session_id),
    )


async def recent_messages(conn: aiopg.Connection, session_id: str, upto: int, limit: int) -> list[dict]:
    """The last `limit` messages of a session up to seq `upto`, oldest first."""
    rows = await db.fetch_all(
        conn,
        "SELECT sender_type, message FROM messages WHERE session_id = %s AND seq <= %s ORDER BY seq DESC LIMIT %s",
        (session_id, upto, limit),
    )
    return rows[::-1]


async def with_assistant(conn: aiopg.Connection, session_id: str) -> bool:
    """True while the assistant answers the session (active, no agent holding it)."""
    row = await db.fetch_one(conn, "SELECT status = 'active' AND ai_mode AS yes FROM sessions WHERE session_id = %s",
                             (session_id,))
    return bool(row and row["yes"])


# Escalation, assignment, hand-back, closing -------------------------------------------------

async def escalate(conn: aiopg.Connection, tenant_id: str, session_id: str) -> dict | None:
    """Put a session the assistant holds in its tenant's queue; escalating again keeps its place.

    Returns the state plus `previous` (the status before); None when the session is unknown,
    another tenant's, closed, or held by an agent.
    """
    return await db.fetch_one(
        conn,
        "UPDATE sessions s SET status = 'waiting', last_activity_at = now(),"
        " escalated_at = CASE WHEN old.status = 'waiting' THEN s.escalated_at ELSE now() END"
        " FROM (SELECT session_id, status FROM sessions WHERE session_id = %s FOR UPDATE) old"
        " WHERE s.session_id = old.session_id AND s.tenant_id = %s AND s.status <> 'closed' AND s.ai_mode"
        f" RETURNING {_returning()}, old.status AS previous",
        (session_id, tenant_id),
    )


async def accept(conn: aiopg.Connection, tenant_id: str, session_id: str, agent_id: int) -> dict | None:
    """Give a non-closed session to the agent unless another agent holds it (first wins).

    A session back with the assistant (return_to_ai) is held by nobody. Returns the session
    with `previous` status, visitor name and business name; None when refused.
    """
    return await db.fetch_one(
        conn,
        "UPDATE sessions s SET assigned_agent_id = %s, status = 'active', ai_mode = false,"
        " accepted_at = now(), last_activity_at = now()"
        " FROM (SELECT session_id, status FROM sessions WHERE session_id = %s FOR UPDATE) old"
        " WHERE s.session_id = old.session_id AND s.tenant_id = %s AND s.status <> 'closed'"
        " AND (s.ai_mode OR s.assigned_agent_id IS NULL OR s.assigned_agent_id = %s)"
        f" RETURNING {_returning()}, old.status AS previous, s.visitor_name,"
        " (SELECT business_name FROM widget_configs w WHERE w.site_key = s.site_key) AS business_name",
        (agent_id, session_id, tenant_id, agent_id),
    )


async def return_to_ai(conn: aiopg.Connection, tenant_id: str, session_id: str, agent_id: int | None) -> dict | None:
    """Hand a chat the agent holds (any, for `agent_id` None), or a waiting one, back to the assistant."""
    return await db.fetch_one(
        conn,
        "UPDATE sessions s SET status = 'active', ai_mode = true, last_activity_at = now()"
        " FROM (SELECT session_id, status FROM sessions WHERE session_id = %(sid)s FOR UPDATE) old"
        " WHERE s.session_id = old.session_id AND s.tenant_id = %(tenant)s AND s.status <> 'closed'"
        " AND (s.status = 'waiting' OR (NOT s.ai_mode AND (%(agent)s::bigint IS NULL"
        "      OR s.assigned_agent_id = %(agent)s::bigint)))"
        f" RETURNING {_returning()}, old.status AS previous",
        {"sid": session_id, "tenant": tenant_id, "agent": agent_id},
    )


async def close(conn: aiopg.Connection, tenant_id: str, session_id: str, agent_id: int | None) -> dict | None:
    """End a chat no other agent holds (any chat, for `agent_id` None): status closed, ended_at."""
    return await db.fetch_one(
        conn,
        "UPDATE sessions s SET status = 'closed', ai_mode = false, ended_at = now(), last_activity_at = now()"
        " FROM (SELECT session_id, status FROM sessions WHERE session_id = %(sid)s FOR UPDATE) old"
        " WHERE s.session_id = old.session_id AND s.tenant_id = %(tenant)s AND s.status <> 'closed'"
        " AND (%(agent)s::bigint IS NULL OR s.ai_mode OR s.assigned_agent_id IS NULL"
        "      OR s.assigned_agent_id = %(agent)s::bigint)"
        f" RETURNING {_returning()}, old.status AS previous",
        {"sid": session_id, "tenant": tenant_id, "agent": agent_id},
    )


async def insert_rating(conn: aiopg.Connection, tenant_id: str, session_id: str, rating: int,
                        comment: str | None) -> dict | None:
    """Rate a closed session of the tenant once (for the agent who held it); None when refused."""
    return await db.fetch_one(
        conn,
        "INSERT INTO ratings (tenant_id, session_id, agent_id, rating, comment)"
        " SELECT tenant_id, session_id, assigned_agent_id, %s, %s FROM sessions"
        " WHERE session_id = %s AND tenant_id = %s AND status = 'closed'"
        " ON CONFLICT (session_id) DO NOTHING"
        " RETURNING id, tenant_id, session_id, agent_id, rating, comment, created_at",
        (rating, comment, session_id, tenant_id),
    )


# The queue ----------------------------------------------------------------------------------

async def waiting_tenants(conn: aiopg.Connection) -> list[str]:
    """Tenants with at least one waiting session."""
    rows = await db.fetch_all(conn, "SELECT DISTINCT tenant_id FROM sessions WHERE status = 'waiting'")
    return [r["tenant_id"] for r in rows]


async def queue(conn: aiopg.Connection, tenant_id: str) -> list[dict]:
    """A tenant's waiting sessions in queue order (escalation time)."""
    return await db.fetch_all(
        conn,
        "SELECT session_id, site_key FROM sessions WHERE tenant_id = %s AND status = 'waiting'"
        " ORDER BY escalated_at NULLS LAST, id",
        (tenant_id,),
    )


async def queue_settings(conn: aiopg.Connection, tenant_id: str) -> dict | None:
    """A tenant's assignment mode and its recent mean seconds from escalation to acceptance
    (the last 50 accepted escalations of the past day; NULL without any)."""
    return await db.fetch_one(
        conn,
        "SELECT t.assignment, (SELECT avg(EXTRACT(EPOCH FROM r.accepted_at - r.escalated_at)) FROM ("
        "   SELECT accepted_at, escalated_at FROM sessions WHERE tenant_id = t.id AND accepted_at IS NOT NULL"
        "   AND escalated_at IS NOT NULL AND accepted_at >= escalated_at AND accepted_at > now() - interval '1 day'"
        "   ORDER BY accepted_at DESC LIMIT 50) r) AS accept_seconds"
        " FROM tenants t WHERE t.id = %s",
        (tenant_id,),
    )


async def agent_loads(conn: aiopg.Connection, tenant_id: str, agent_ids: list[int]) -> list[dict]:
    """The given active agents of the tenant with their limit and their chats held, fewest first."""
    return await db.fetch_all(
        conn,
        "SELECT a.id, a.full_name, a.max_concurrent_chats,"
        " (SELECT count(*) FROM sessions s WHERE s.assigned_agent_id = a.id AND s.status = 'active'"
        "  AND NOT s.ai_mode) AS active"
        " FROM agents a WHERE a.tenant_id = %s AND a.is_active AND a.id = ANY(%s) ORDER BY active, a.id",
        (tenant_id, agent_ids),
    )


async def widget_waiting(conn: aiopg.Connection, site_key: str) -> int:
    """How many sessions of a widget wait in the queue."""
    row = await db.fetch_one(conn, "SELECT count(*) AS n FROM sessions WHERE site_key = %s AND status = 'waiting'",
                             (site_key,))
    return row["n"]


# Agents' views and figures ------------------------------------------------------------------

async def active_chats(conn: aiopg.Connection, tenant_id: str, agent_id: int | None) -> list[dict]:
    """Chats agents hold (one agent's, or the tenant's for `agent_id` None), with message counts."""
    return await db.fetch_all(
        conn,
        "SELECT s.session_id, s.site_key, s.visitor_name, s.visitor_email, s.visitor_info, s.user_id,"
        " s.assigned_agent_id, s.started_at, s.accepted_at, s.last_seq, w.business_name,"
        " (SELECT count(*) FROM messages m WHERE m.session_id = s.session_id) AS message_count"
        " FROM sessions s LEFT JOIN widget_configs w ON w.site_key = s.site_key"
        " WHERE s.tenant_id = %s AND s.status = 'active' AND NOT s.ai_mode AND s.assigned_agent_id IS NOT NULL"
        " AND s.assigned_agent_id = coalesce(%s, s.assigned_agent_id) ORDER BY s.accepted_at, s.id",
        (tenant_id, agent_id),
    )
