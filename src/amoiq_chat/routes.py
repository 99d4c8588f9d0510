"""Every route of the application, added in one place."""
from __future__ import annotations

from aiohttp import web

from .views import agents, auth, chat, docs, frontend, health, keys, metrics, support, tenant, webhooks, widgets
from .ws import agent as ws_agent
from .ws import support as ws_support  # noqa: F401  (registers the workflow's frames on both sockets)
from .ws import visitor as ws_visitor

# Route tables of the view modules, in the order they are added.
ROUTE_TABLES = (health.routes, metrics.routes, docs.routes, auth.routes, support.routes, agents.routes, keys.routes,
                tenant.routes, widgets.routes, chat.routes, webhooks.routes, frontend.routes, ws_agent.routes,
                ws_visitor.routes)

# Route names (the `name=` of each route) that answer CORS requests from any origin:
# what the widget calls from customers' websites. Everything else answers CORS_ORIGINS only.
PUBLIC_ROUTES = frozenset({"health", "widget_config", "chat_anonymous_token", "chat_session", "webchat_message",
                           "chat_post_message", "chat_messages", "widget_escalate", "widget_queue_position",
                           "chat_rating", "widget_js"})


def setup_routes(app: web.Application) -> None:
    """Add every view module's routes."""
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
