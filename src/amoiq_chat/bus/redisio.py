"""The two places the bus goes beneath redis-py's public API, in one small adapter.

Both are worth it, measured: parsing the replies already buffered in one go (a writer's batch
arrives together) took the server from 130-141 to 67-120 us per message and the maximum from
4,352-4,852 to 5,119-8,567 msg/s (bench/README.md, "A/B: the bus listener parses buffered
replies in one go"). `tests/test_redisio.py` fails when the library changes underneath.
"""
from __future__ import annotations

from typing import Any, Iterator

import redis.asyncio as aioredis

# Keyword arguments of a pool's connections that redis-py adds for its own bookkeeping and that
# a connection made by hand must not be given (they are not the connection class's parameters).
_POOL_ONLY = ("maint_", "orig_", "himport")


def subscription_connection(pool: aioredis.ConnectionPool) -> aioredis.Connection:
    """A new, unconnected RESP2 connection like the pool's (subscription replies then come back from
    read_response, not through a push handler)."""
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if not k.startswith(_POOL_ONLY)}
    return pool.connection_class(**kwargs, protocol=2)


def buffered_replies(conn: aioredis.Connection) -> Iterator[list[Any]]:
    """The pub/sub replies the connection has already read and not parsed yet, without awaiting.

    Through redis-py's hiredis parser (its `_parser._reader`); without hiredis, nothing (each
    reply then goes through `read_response`).
    """
    reader = getattr(getattr(conn, "_parser", None), "_reader", None)
    while reader is not None:
        reply = reader.gets()  # a pub/sub reply is a list; "not enough data" is a sentinel (False)
        if isinstance(reply, Exception):
            raise reply
        if not isinstance(reply, list):
            return
        yield reply
