"""The webhook runs (`--only webhooks`): the one-process server with delivery on, one endpoint on a local
receiver (bench/receiver.py, a process of its own) for a tenant of its own; 1,000 msg/s offered, then the
maximum. Beside the chat's figures: whether every message reached the receiver once, and the delay from
its commit to its receipt."""
from __future__ import annotations

import asyncio
import time

from .target import Child, Tenant, add_webhook, start_receiver
from .loadgen import Endpoint

FIXED = (50, 20.0)   # the fixed load: 50 pairs x 20 msg/s = 1,000 msg/s offered
DRAIN = 60.0   # seconds at most for the last webhooks to arrive after a load
QUIET = 5.0   # ... or until none arrived for this long


async def run(bench, server: Child, pool, redis_client, secret: str) -> None:
    """Both loads on `server`, each followed by what the receiver got of it."""
    bench.progress.start("starting the webhook receiver", 2)
    receiver = start_receiver()
    try:
        tenant = await Tenant().create(pool, secret, max(FIXED[0], bench.args.max_pairs))
        url = f"http://127.0.0.1:{receiver.port}"
        await add_webhook(pool, tenant.tenant_id, f"{url}/hook")
        bench.progress.finish()
        base = f"ws://127.0.0.1:{server.port}"
        ep = Endpoint(base, base, tenant.agent_ids, tenant.agent_tokens, tenant.site_key, tenant.tenant_id)
        for name, mode in (("webhooks-1p fixed", "fixed"), ("webhooks-1p max", "max")):
            async with bench.http.post(f"{url}/reset") as response:
                await response.read()
            await bench.messages(name, mode, ep, [server], (pool, redis_client), fixed=FIXED)
            result = bench.results["messages"].get(name)
            if result and "error" not in result:
                result["webhooks"] = await received(bench, url, result["sent"])
    finally:
        receiver.stop()


async def received(bench, url: str, sent: int) -> dict:
    """What the receiver got of a load's `sent` messages, once all arrived or none came for QUIET s."""
    bench.progress.start("webhooks: waiting for the last deliveries", 0)
    deadline, last, changed = time.monotonic() + DRAIN, -1, time.monotonic()
    while True:
        async with bench.http.get(f"{url}/stats") as response:
            got = await response.json()
        if got["messages"] != last:
            last, changed = got["messages"], time.monotonic()
        if got["messages"] >= sent or time.monotonic() > deadline or time.monotonic() - changed > QUIET:
            break
        await asyncio.sleep(0.25)
    bench.progress.finish()
    got["expected"] = sent
    got["once_each"] = got["messages"] == sent and got["more_than_once"] == 0
    return got
