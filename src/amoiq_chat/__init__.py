"""amoiq-chat: a self-hostable live-chat backend (aiohttp, PostgreSQL, Redis)."""

__version__ = "0.1.0"
