"""The edge of the server: what a connection may do before it is a request the application sees.

`GuardedRunner(app, EdgeLimits.from_settings(settings))` is a `web.AppRunner` whose connections are
capped per peer address, must finish their request headers within a deadline and a byte budget,
have a declared body over the limit refused before `100 Continue`, get aiohttp's parser errors in
the JSON envelope, and (WebSockets) are closed with 1002 on an unmasked client frame. Its setup
raises the process's soft open-file limit to the hard one. Use it wherever a runner is made:
`cli.py`'s serve, or a gunicorn worker's app factory (`async def app(): return GuardedRunner(...)`).
"""
from .limits import EdgeLimits, raise_open_file_limit
from .runner import GuardedRunner

__all__ = ("EdgeLimits", "GuardedRunner", "raise_open_file_limit")
