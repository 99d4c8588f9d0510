"""Dashboard figures from stored rows: widget overview and agent stats; null while there is no data."""
from __future__ import annotations

from decimal import Decimal

import aiopg

from ..store import stats as store


def minutes(seconds: float | Decimal | None) -> str | None:
    """Format a duration like the seeds: "2.3 min"; None stays None."""
    if seconds is None:
        return None
    return f"{float(seconds) / 60:.1f} min"


def _rating(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


async def tenant_stats(pool: aiopg.Pool, tenant_id: str) -> dict:
    """The `stats` block of the widget list and of widgets/stats/overview."""
    async with pool.acquire() as conn:
        row = await store.tenant_overview(conn, tenant_id)
    return {
        "total_widgets": row["total_widgets"],
        "active_widgets": row["active_widgets"],
        "inactive_widgets": row["total_widgets"] - row["active_widgets"],
        "total_chats": row["total_chats"],
        "total_messages": row["total_messages"],
        "average_response_time": minutes(row["response_seconds"]),
        "customer_satisfaction": _rating(row["satisfaction"]),
    }


async def agent_stats(pool: aiopg.Pool, tenant_id: str, agent_id: int | None) -> dict:
    """The figures of agents/stats: one agent's, or (agent_id None) all the tenant's agents together."""
    async with pool.acquire() as conn:
        row = await store.agent_figures(conn, tenant_id, agent_id)
    return {
        "chatsHandled": row["chats_handled"],
        "activeChats": row["active_chats"],
        "avgResponseTime": minutes(row["response_seconds"]),
        "customerSatisfaction": _rating(row["satisfaction"]),
    }
