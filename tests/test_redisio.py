"""The bus's adapter beneath redis-py's public API: fails loudly when the library changes underneath."""
from __future__ import annotations

import redis.asyncio as aioredis

from amoiq_chat.bus.redisio import buffered_replies, subscription_connection


async def test_the_adapter_still_reaches_redis_pys_buffered_replies(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    conn = subscription_connection(client.connection_pool)
    try:
        await conn.connect()
        assert conn.protocol in (2, "2")
        reader = getattr(getattr(conn, "_parser", None), "_reader", None)
        assert reader is not None, "redis-py no longer keeps hiredis's reader at conn._parser._reader"
        await conn.send_command("SUBSCRIBE", "redisio-a", "redisio-b")
        first = await conn.read_response()
        assert first[0] == b"subscribe"
        # The second confirmation arrived with the first: the adapter parses it without awaiting.
        rest = list(buffered_replies(conn))
        if not rest:  # the two replies came in two reads; the next one is then read the public way
            rest = [await conn.read_response()]
        assert [r[:2] for r in rest] == [[b"subscribe", b"redisio-b"]]
        assert list(buffered_replies(conn)) == []
    finally:
        await conn.disconnect()
        await client.aclose()
