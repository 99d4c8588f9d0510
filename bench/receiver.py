"""A webhook receiver for the bench, in a process of its own: answers 200 to every POST and keeps, per
message, how often it came and its delay from the message's stored time (`timestamp`, set at its
commit) to receipt. GET /stats sums that up; POST /reset forgets it."""
from __future__ import annotations

import argparse
import datetime as dt
import time

import orjson
from aiohttp import web

SEEN: web.AppKey[dict] = web.AppKey("seen", dict)  # messageId -> [times received, first delay ms]


def delay_ms(stamp: str) -> float:
    """Milliseconds from an ISO timestamp (the payload's, to the millisecond) to now."""
    return (time.time() - dt.datetime.fromisoformat(stamp).timestamp()) * 1000


async def receive(request: web.Request) -> web.Response:
    """Count one delivery of a message.created webhook of the measured load (texts "b:...")."""
    body = orjson.loads(await request.read())
    if not body["data"]["text"].startswith("b:"):  # a pair's opening message, before the load
        return web.Response(text="ok")
    seen = request.app[SEEN].setdefault(body["data"]["messageId"], [0, delay_ms(body["timestamp"])])
    seen[0] += 1
    return web.Response(text="ok")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of sorted values."""
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))], 2)


async def stats(request: web.Request) -> web.Response:
    """Messages received, how many more than once, and the delay percentiles of their first receipt."""
    seen = request.app[SEEN]
    delays = sorted(first for _, first in seen.values())
    return web.json_response({"messages": len(seen), "posts": sum(n for n, _ in seen.values()),
                              "more_than_once": sum(1 for n, _ in seen.values() if n > 1),
                              "p50_ms": percentile(delays, 50), "p99_ms": percentile(delays, 99),
                              "max_ms": round(delays[-1], 2) if delays else None})


async def reset(request: web.Request) -> web.Response:
    """Forget everything received."""
    request.app[SEEN].clear()
    return web.Response(text="ok")


def main() -> None:
    """Serve on 127.0.0.1:--port."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app[SEEN] = {}
    app.router.add_post("/hook", receive)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
