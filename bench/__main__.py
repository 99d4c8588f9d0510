"""`python -m bench`: run the suite, print the tables, write bench/results/<timestamp>.json.

It reports figures and never fails on them: the exit status is 0 unless the bench itself
could not run (bad arguments). See bench/README.md for what each figure means.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import resource
import secrets
import signal
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import psutil

from . import failover, loadgen, profile, rounds, support, webhooks
from .loadgen import Endpoint
from .report import Progress, ratio, render, targets
from .target import (RESULTS, ROOT, Backing, BackingCpu, Child, Tenant, analyze, git, pg_commits, server_checkout,
                     start_relay, start_server, verify, xlen)

PARTS = ("relay", "server1", "server2", "idle", "http", "webhooks", "failover", "support")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; durations also from BENCH_DURATION / BENCH_HTTP_DURATION."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short loads, 1,000 idle sockets only: a smoke run (~1 min with the server)")
    parser.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 10)),
                        help="seconds of each message load (default 10, env BENCH_DURATION)")
    parser.add_argument("--rate", type=float, default=20.0, help="fixed load: messages per second per pair (20)")
    parser.add_argument("--fixed-pairs", type=int, default=200, help="fixed load: pairs (200)")
    parser.add_argument("--max-pairs", type=int, default=50, help="maximum load: pairs (50)")
    parser.add_argument("--idle", default="1000,5000", help="idle visitor sockets, cumulative steps (1000,5000)")
    parser.add_argument("--idle-concurrency", type=int, default=int(os.environ.get("BENCH_IDLE_CONCURRENCY", 10)),
                        help="idle sockets being opened at once (10)")
    parser.add_argument("--http-duration", type=float, default=float(os.environ.get("BENCH_HTTP_DURATION", 5)),
                        help="seconds per HTTP route (default 5, env BENCH_HTTP_DURATION)")
    parser.add_argument("--http-concurrency", type=int, default=32, help="HTTP requests in flight (32)")
    parser.add_argument("--ai-rate", type=float, default=100.0, help="assistant, fixed load: questions per second in all (100)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run, of {','.join(PARTS)}")
    parser.add_argument("--modes", default="fixed,max", help="message loads to run, of fixed,max (both)")
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="do not ANALYZE the bench database after each load (see README)")
    parser.add_argument("--profile", action="store_true", help="py-spy the one-process server during its maximum load")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the selection this many times, each in a process of its own, and show each figure's median and range")
    parser.add_argument("--baseline", metavar="REV",
                        help="in each round run REV's server too (a git revision, or a directory with a checkout), in alternating order, and compare")
    parser.add_argument("--json", metavar="PATH", help="write the results here instead of bench/results/<timestamp>.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 4.0)
        args.http_duration = min(args.http_duration, 2.0)
        args.idle = "1000"
    args.parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = args.parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(args.modes) <= {"fixed", "max"}:
        parser.error("--modes takes fixed, max or both")
    args.idle_steps = sorted(int(n) for n in args.idle.split(",") if n.strip())
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds takes 1 to 50")
    if args.duration <= 0 or args.duration > 600 or args.fixed_pairs < 1 or args.max_pairs < 1:
        parser.error("durations must be in (0, 600] s and pair counts positive")
    return args


def machine() -> dict:
    """What the figures came from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "aiohttp": aiohttp.__version__,
            "platform": platform.platform(), "commit": git("rev-parse", "--short", "HEAD"),
            "server_commit": git("rev-parse", "--short", "HEAD", cwd=server_checkout())}


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores) so far, as its cores' time less their idle time.

    The kernel counts idle time exactly (NO_HZ) but user and system time by sampling the task
    running at each timer tick (CONFIG_TICK_CPU_ACCOUNTING, 250 Hz here), which misses short
    bursts between ticks: with 1 ms pauses in the server's writer, the sampled figure read 14 %
    less busy, the exact one 6 %, as did the processes' own CPU times (which the kernel keeps exactly).
    """
    times = psutil.cpu_times()
    return time.monotonic() * (os.cpu_count() or 1) - times.idle - getattr(times, "iowait", 0.0)


def machine_pct(cpu_seconds: float, wall: float) -> float:
    """CPU seconds spent over `wall` seconds, in % of all the machine's cores."""
    return round(100 * max(cpu_seconds, 0.0) / (wall * (os.cpu_count() or 1)), 1)


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards the hard limit (children inherit it); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Bench:
    """One run of the suite: its settings, progress, results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict = {"started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "machine": machine(), "messages": {}, "idle": {}, "http": {},
                              "settings": {k: v for k, v in vars(args).items() if k != "parts"} | {"parts": sorted(args.parts)}}
        self.progress = Progress(self.planned_seconds())
        self.http: aiohttp.ClientSession | None = None   # made in run(), inside the loop
        self.relay: Child | None = None
        self.relay_ep: Endpoint | None = None
        self.backing_cpu: BackingCpu | None = None   # once the server's Redis URL is known

    def planned_seconds(self) -> float:
        """Rough seconds of the whole run, for the progress bar."""
        a, parts = self.args, self.args.parts
        load = len(a.modes) * (a.duration + 4)
        relay_again = (a.duration + 4) if "relay" in parts and "max" in a.modes else 0
        idle = sum(a.idle_steps) / 1000 * 3
        total = 0.0
        if "relay" in parts:
            total += load + (idle if "idle" in parts else 0) + (a.http_duration if "http" in parts else 0)
        if "server1" in parts:
            total += 10 + load + relay_again + (idle if "idle" in parts else 0) + (2 * a.http_duration if "http" in parts else 0)
        if "server2" in parts:
            total += 10 + load + relay_again
        if "webhooks" in parts:
            total += 10 + load + relay_again
        if "support" in parts:
            total += 2 * a.duration + 30
        if "failover" in parts:
            total += 20
        return total

    async def messages(self, name: str, mode: str, ep: Endpoint, children: list[Child], check=None, profile_pid=None,
                       fixed: tuple[int, float] | None = None) -> None:
        """Open pairs, run one load, record client and server figures (and the storage check).

        A server's maximum load is preceded by a relay maximum load (the relay process idles
        meanwhile), and its ratios are to that adjacent run: a shared machine drifts within minutes.
        """
        a = self.args
        if mode not in a.modes:
            return
        reference = f"relay {mode}"
        if mode == "max" and self.relay is not None and not name.startswith("relay"):
            reference = f"relay max, before {name.split()[0]}"
            await self.messages(reference, "max", self.relay_ep, [self.relay])
        pairs_n, rate = fixed or (a.fixed_pairs, a.rate)
        pairs_n = pairs_n if mode == "fixed" else a.max_pairs
        self.progress.start(f"{name}: opening {pairs_n} pairs", 0)
        prefix = f"b{secrets.token_hex(3)}-{name.replace(' ', '-')}"
        try:
            pairs = await loadgen.open_pairs(self.http, ep, pairs_n, prefix)
        except (loadgen.SetupError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            self.results["messages"][name] = {"error": str(exc) or type(exc).__name__}
            self.progress.finish()
            return
        self.progress.start(f"{name}", a.duration + 4)
        snap: dict = {}
        before_xlen = await xlen(check[1]) if check else 0
        before_commits = await pg_commits(check[0]) if check else 0
        cpu0 = sum(c.cpu_seconds() for c in children)
        sys0 = sum(c.system_seconds() for c in children)
        if self.backing_cpu is not None:
            self.backing_cpu.begin()
        busy0, wall0 = busy_seconds(), time.monotonic()

        def after_drain() -> None:
            snap["server"] = sum(c.cpu_seconds() for c in children) - cpu0
            snap["server_sys"] = sum(c.system_seconds() for c in children) - sys0
            snap["pg"], snap["redis"] = self.backing_cpu.seconds() if self.backing_cpu is not None else (0.0, 0.0)
            snap["backing"] = snap["pg"] + snap["redis"]
            snap["busy"], snap["wall"] = busy_seconds() - busy0, time.monotonic() - wall0

        spy = profile.start(profile_pid, a.duration) if profile_pid else None
        if mode == "fixed":
            stats = await loadgen.run_fixed(pairs, rate, a.duration, self.progress.tick, after_drain)
        else:
            stats = await loadgen.run_max(pairs, a.duration, self.progress.tick, after_drain)
        run = stats.summary()
        delivered = max(stats.delivered, 1)
        run["server_cpu_s"] = round(snap["server"], 3)
        run["server_cpu_us_per_msg"] = round(1e6 * snap["server"] / delivered, 1)
        run["server_cpu_system_pct"] = round(100 * snap["server_sys"] / snap["server"], 1) if snap["server"] else None
        run["backing_cpu_us_per_msg"] = round(1e6 * snap["backing"] / delivered, 1) if children and check else None
        run["pg_cpu_us_per_msg"] = round(1e6 * snap["pg"] / delivered, 1) if children and check else None
        run["redis_cpu_us_per_msg"] = round(1e6 * snap["redis"] / delivered, 1) if children and check else None
        # Everything else the machine ran meanwhile (other users of the shared cores): a disturbed run shows here.
        others = snap["busy"] - snap["server"] - stats.loadgen_cpu_s - (snap["backing"] if check else 0.0)
        run["others_cpu_pct"] = machine_pct(others, snap["wall"])
        # The whole machine: near 100 % the run was short of CPU; well below, something waited (a lock, a round trip).
        run["machine_busy_pct"] = machine_pct(snap["busy"], snap["wall"])
        if check:
            run["check"] = await verify(check[0], check[1], prefix, stats.sent, before_xlen)
            await asyncio.sleep(1.0)   # the statistics collector's delay
            run["pg_commits_per_msg"] = round((await pg_commits(check[0]) - before_commits) / delivered, 3)
            if a.analyze:   # tables grown from empty in seconds: give the next load's plans current statistics
                await analyze(check[0])
        if spy:
            run["profile"] = await profile.finish(spy, RESULTS, self.results["started"])
        relay = self.results["messages"].get(reference)
        if relay and "error" not in relay and not name.startswith("relay"):
            run["relay_reference"] = reference
            run["x_relay_rate"] = ratio(run["delivered_per_s"], relay["delivered_per_s"])
            run["x_relay_p50"] = ratio(run["p50_ms"], relay["p50_ms"])
            run["x_relay_p99"] = ratio(run["p99_ms"], relay["p99_ms"])
            run["x_relay_cpu"] = ratio(run["server_cpu_us_per_msg"], relay["server_cpu_us_per_msg"])
        one = self.results["messages"].get(f"server-1p {mode}")
        if name.startswith("server-2p") and one and "error" not in one:   # the cross-process tax
            run["x_1p_cpu"] = ratio(run["server_cpu_us_per_msg"], one["server_cpu_us_per_msg"])
        self.results["messages"][name] = run
        self.progress.finish()

    async def idle(self, name: str, child: Child, base: str, first_frame) -> None:
        """Resident memory per idle visitor socket, at each step of --idle."""
        steps, opened, errors = [], [], 0
        await asyncio.sleep(1.0)
        rss0 = child.rss()
        try:
            for target in self.args.idle_steps:
                self.progress.start(f"{name}: {target} idle sockets", target / 1000 * 3)
                socks, errs = await loadgen.open_idle(self.http, base, target - len(opened), f"idle{len(opened)}-{secrets.token_hex(3)}",
                                                      first_frame, self.args.idle_concurrency)
                opened += socks
                errors += len(errs)
                await asyncio.sleep(2.0)
                rss = child.rss()
                still_open = sum(1 for ws in opened if not ws.closed)  # none dropped (by the heartbeat, say)
                steps.append({"sockets": len(opened), "open": still_open, "rss_mib": round(rss / 2**20, 1),
                              "kib_per_socket": round((rss - rss0) / max(len(opened), 1) / 1024, 2), "errors": errors,
                              "first_error": errs[0] if errs else None})
                self.progress.finish()
                if not opened:
                    self.results["idle"][name] = {"error": f"no socket opened; first error: {errs[0] if errs else '-'}"}
                    return
            self.results["idle"][name] = {"rss0_mib": round(rss0 / 2**20, 1), "steps": steps}
        finally:
            await loadgen.close_all(opened)

    async def http_route(self, name: str, make_request, target: Child) -> None:
        """Requests/s and latency of one route, the serving process's CPU per request and the machine's busy %."""
        self.progress.start(f"HTTP {name}", self.args.http_duration)
        cpu0, busy0, wall0 = target.cpu_seconds(), busy_seconds(), time.monotonic()
        stats = await loadgen.http_load(name, make_request, self.args.http_concurrency, self.args.http_duration, self.progress.tick)
        cpu, busy, wall = target.cpu_seconds() - cpu0, busy_seconds() - busy0, time.monotonic() - wall0
        run = self.results["http"][name] = stats.summary()
        run["server_cpu_us_per_request"] = round(1e6 * cpu / max(run["ok"], 1), 1)
        run["machine_busy_pct"] = machine_pct(busy, wall)
        self.progress.finish()

    async def run_relay(self) -> None:
        """The ceiling: the same loads against the bare relay, which then stays up for the server's runs."""
        self.progress.start("starting the relay", 0)
        relay = self.relay = start_relay()
        base = f"ws://127.0.0.1:{relay.port}"
        self.relay_ep = Endpoint(base, base, [str(i + 1) for i in range(max(self.args.fixed_pairs, self.args.max_pairs))])
        if "idle" in self.args.parts:   # first, on a fresh process: a heap grown by the loads would hide the cost
            await self.idle("relay", relay, base, lambda sid: b'{"type":"join","siteKey":"relay"}')
        await self.messages("relay fixed", "fixed", self.relay_ep, [relay])
        await self.messages("relay max", "max", self.relay_ep, [relay])
        if "http" in self.args.parts:
            url = f"http://127.0.0.1:{relay.port}/api/widgets/relay/config"
            await self.http_route("relay GET widget config", lambda h, w, n: _get(h, url), relay)

    async def run_server(self) -> None:
        """The server, one process then two (visitor on one, agent on the other)."""
        from amoiq_chat import db
        import redis.asyncio as aioredis

        a = self.args
        backing = Backing()
        children: list[Child] = []
        pool = redis_client = None
        try:
            self.progress.start("starting PostgreSQL/Redis and the server", 10)
            backing.start()
            self.results["backing"] = f"{backing.source}: {_redact(backing.database_url)} {_redact(backing.redis_url)}"
            backing.reset()
            self.backing_cpu = BackingCpu(backing.redis_url)
            secret = secrets.token_urlsafe(32)
            server = start_server("server-1", backing, secret)
            children.append(server)
            pool = await db.create_pool(backing.database_url, 1, 4)
            redis_client = aioredis.Redis.from_url(backing.redis_url)
            tenant = await Tenant().create(pool, secret, max(a.fixed_pairs, a.max_pairs))
            self.progress.finish()
            check = (pool, redis_client)
            base = f"ws://127.0.0.1:{server.port}"
            ep = Endpoint(base, base, tenant.agent_ids, tenant.agent_tokens, tenant.site_key, tenant.tenant_id)
            if "server1" in a.parts:
                if "idle" in a.parts:
                    join = lambda sid: orjson.dumps({"type": "join", "siteKey": tenant.site_key, "sessionId": sid})  # noqa: E731
                    await self.idle("server", server, base, join)
                await self.messages("server-1p fixed", "fixed", ep, [server], check)
                await self.messages("server-1p max", "max", ep, [server], check,
                                    profile_pid=server.popen.pid if a.profile else None)
                if "http" in a.parts:
                    await self.server_http(server, tenant, pool)
            if "server2" in a.parts:
                self.progress.start("starting a second server process", 5)
                other = start_server("server-2", backing, secret)
                children.append(other)
                self.progress.finish()
                ep2 = Endpoint(base, f"ws://127.0.0.1:{other.port}", tenant.agent_ids, tenant.agent_tokens,
                               tenant.site_key, tenant.tenant_id, alternate=True)
                await self.messages("server-2p fixed", "fixed", ep2, [server, other], check)
                await self.messages("server-2p max", "max", ep2, [server, other], check)
            if "webhooks" in a.parts:   # after the message loads: they run with no endpoint anywhere
                await webhooks.run(self, server, pool, redis_client, secret)
            if "failover" in a.parts:
                await self.run_failover(backing, secret, tenant.site_key)
            if "support" in a.parts:
                for child in children:  # each support figure runs on servers of its own
                    child.stop()
                children.clear()
                await support.run(self, backing, secret, pool)
        except Exception as exc:  # the bench reports; it does not crash the run
            self.results.setdefault("server_error", f"{type(exc).__name__}: {exc}")
            for part, name in (("server1", "server-1p fixed"), ("server1", "server-1p max"),
                               ("server2", "server-2p fixed"), ("server2", "server-2p max"),
                               ("webhooks", "webhooks-1p fixed"), ("webhooks", "webhooks-1p max")):
                if part in a.parts:
                    self.results["messages"].setdefault(name, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            if redis_client is not None:
                await redis_client.aclose()
            if pool is not None:
                pool.close()
                await pool.wait_closed()
            for child in children:
                child.stop()
            backing.stop()

    async def run_failover(self, backing: Backing, secret: str, site_key: str) -> None:
        """`serve --workers 2`, one worker SIGKILLed under load: until its clients are served again."""
        self.progress.start("failover: serve --workers 2, one worker killed", 20)
        self.results["failover"] = await failover.run(self.http, backing, secret, site_key)
        self.progress.finish()

    async def server_http(self, server: Child, tenant: Tenant, pool) -> None:
        """GET /api/widgets/{siteKey}/config and POST /webchat/message, sessions with the assistant off."""
        from amoiq_chat import db

        base = f"http://127.0.0.1:{server.port}"
        config_url = f"{base}/api/widgets/{tenant.site_key}/config"
        await self.http_route("server GET /api/widgets/{siteKey}/config", lambda h, w, n: _get(h, config_url), server)
        prefix = f"bhttp-{secrets.token_hex(3)}"
        headers = {"Authorization": f"Bearer {tenant.publishable_key}", "Content-Type": "application/json"}
        # One session per worker, made as a widget makes it, so that each message resumes it as a
        # widget does (with the sessionSecret it was given, when the server gives one); assistant off.
        proofs = []
        for w in range(self.args.http_concurrency):
            body = orjson.dumps({"tenantId": tenant.tenant_id, "siteKey": tenant.site_key, "sessionId": f"{prefix}-{w}"})
            async with self.http.post(f"{base}/api/chat/session", data=body, headers=headers) as response:
                answer = await response.json()
                if response.status != 200:
                    raise loadgen.SetupError(f"POST /api/chat/session: {response.status} {answer}")
            proofs.append({"sessionSecret": answer["sessionSecret"]} if answer.get("sessionSecret") else {})
        async with db.transaction(pool) as conn:
            await db.execute(conn, "UPDATE sessions SET ai_mode = false WHERE session_id LIKE %s", (prefix + "-%",))
        url = f"{base}/webchat/message"

        def post(h, w, n):
            body = orjson.dumps({"text": f"http {w} {n} {loadgen.TEXT_PAD}", "tenantId": tenant.tenant_id,
                                 "sessionId": f"{prefix}-{w}", "fingerprint": f"bench{w}", "siteId": tenant.site_key,
                                 "clientMessageId": f"h{w}-{n}", **proofs[w]})
            return _post(h, url, body, headers)

        await self.http_route("server POST /webchat/message", post, server)

    async def run(self) -> dict:
        """Every selected part, in order; each failure becomes a 'not available' row."""
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            if "relay" in self.args.parts:
                await self.run_relay()
            if self.args.parts & {"server1", "server2", "webhooks", "failover", "support"}:
                await self.run_server()
        finally:
            if self.relay is not None:
                self.relay.stop()
            await self.http.close()
            self.progress.close()
        self.results["targets"] = targets(self.results)
        self.results["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.results


async def _get(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        await response.read()
        return response.status


async def _post(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict) -> int:
    async with http.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


def _redact(url: str) -> str:
    """A URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print tables; write the JSON."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # like Ctrl-C: stop the children, then exit
    if args.rounds > 1 or args.baseline:
        return rounds.main(args, sys.argv[1:] if argv is None else argv)
    limit = raise_fd_limit(2 * max(args.idle_steps, default=0) + 4 * args.fixed_pairs + 1024)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.monotonic()
    try:
        results = asyncio.run(Bench(args).run())
    except KeyboardInterrupt:
        print("interrupted: no results written", file=sys.stderr)
        return 130
    results["fd_limit"] = limit
    results["wall_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = Path(args.json).resolve() if args.json else RESULTS / (results["started"].replace(":", "").replace("-", "") + ".json")
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print("\n".join([render(results), *support.render(results)]))
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  ({results['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
