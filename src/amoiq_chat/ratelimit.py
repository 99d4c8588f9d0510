"""Rate-limit window counters in Redis, counted for all the requests of one loop tick at once."""
from __future__ import annotations

import asyncio

import redis.asyncio as aioredis


class WindowCounters:
    """`await hit(key, ttl)` counts one request in a fixed window's key and returns its place in
    the window (1 for the first). The hits of one loop tick go to Redis as one pipeline, one
    INCRBY and one EXPIRE per key: under load many requests arrive in a tick, and a Redis
    round trip through the client's pooled path cost each of them more than its own routing.
    The requests sharing a key get consecutive places, as single INCRs would have given them."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._pending: dict[str, tuple[int, list[asyncio.Future]]] = {}

    async def hit(self, key: str, ttl: int) -> int:
        """This request's place in the window `key` (which expires `ttl` s after its last hit);
        raises what Redis raised."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)  # after the rest of this tick's callbacks: their hits join
        future = loop.create_future()
        self._pending.setdefault(key, (ttl, []))[1].append(future)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        asyncio.get_running_loop().create_task(self._send(pending), name="rate-limit-count")

    async def _send(self, pending: dict[str, tuple[int, list[asyncio.Future]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, (ttl, waiting) in pending.items():
                    pipe.incrby(key, len(waiting))
                    pipe.expire(key, ttl)
                replies = await pipe.execute()
        except BaseException as exc:  # each waiting request gets the error (cancelled: is cancelled)
            for _, waiting in pending.values():
                for future in waiting:
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, waiting), total in zip(pending.values(), replies[::2]):
            first = total - len(waiting)
            for place, future in enumerate(waiting, first + 1):
                if not future.done():
                    future.set_result(place)
