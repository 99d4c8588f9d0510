"""The progress bar (stderr), the tables (stdout) and the targets of issue 5."""
from __future__ import annotations

import sys
import time

BAR = 28


class Progress:
    """One line on stderr: a bar over the planned seconds of the whole run, and the current phase."""

    def __init__(self, planned_seconds: float) -> None:
        self.planned = max(planned_seconds, 1.0)
        self.done = 0.0          # planned seconds of finished phases
        self.phase = ""
        self.phase_planned = 0.0
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def start(self, phase: str, planned: float) -> None:
        """Begin a phase expected to take `planned` seconds."""
        self.phase, self.phase_planned = phase, planned
        self.tick(0.0, force=True)

    def tick(self, elapsed: float, force: bool = False) -> None:
        """Redraw with `elapsed` seconds into the current phase (at most 4 times a second)."""
        now = time.monotonic()
        if not force and (now - self._last < 0.25 or not self.tty):
            return
        self._last = now
        fraction = min(1.0, (self.done + min(elapsed, self.phase_planned)) / self.planned)
        filled = int(fraction * BAR)
        line = f"[{'#' * filled}{'.' * (BAR - filled)}] {fraction * 100:3.0f}%  {self.phase}"
        if self.phase_planned:
            line += f" {min(elapsed, self.phase_planned):4.1f}/{self.phase_planned:.0f}s"
        sys.stderr.write(("\r" + line.ljust(100)) if self.tty else line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        """Count the current phase as done."""
        self.done += self.phase_planned
        self.phase_planned = 0.0

    def close(self) -> None:
        """End the line."""
        if self.tty:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def fmt(value, digits: int = 1) -> str:
    """A number for a table cell; '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value, base) -> float | None:
    """value / base, None when either is missing."""
    if value is None or not base:
        return None
    return round(value / base, 3)


def table(headers: list[str], rows: list[list]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


MESSAGE_HEADERS = ["run", "pairs", "offered/s", "delivered/s", "x relay", "p50 ms", "p95 ms", "p99 ms", "x relay",
                   "max ms", "lost", "srv us/msg", "x relay", "kernel %", "pg+redis us/msg", "loadgen us/msg", "others %", "busy %", "msg/commit", "stored once",
                   "webhook"]


def message_rows(results: dict) -> list[list]:
    """One row per end-to-end run, ratios to the relay's run of the same mode."""
    rows = []
    for name, run in results.get("messages", {}).items():
        if "error" in run:
            rows.append([name] + ["n/a"] * (len(MESSAGE_HEADERS) - 1))
            continue
        check = run.get("check") or {}
        rows.append([name, run["pairs"], run.get("offered_per_s"), run["delivered_per_s"], run.get("x_relay_rate"),
                     run["p50_ms"], run["p95_ms"], run["p99_ms"], run.get("x_relay_p99"), run["max_ms"], run["lost"],
                     run.get("server_cpu_us_per_msg"), run.get("x_relay_cpu"), run.get("server_cpu_system_pct"),
                     run.get("backing_cpu_us_per_msg"),
                     run.get("loadgen_cpu_us_per_msg"), run.get("others_cpu_pct"), run.get("machine_busy_pct"),
                     round(1 / run["pg_commits_per_msg"], 1) if run.get("pg_commits_per_msg") else "-",
                     "-" if not check else f"{check['stored']}/{check['expected']} dup {check['duplicates']}",
                     "-" if not check else f"outbox {check['outbox_rows']} xadd {check['stream_appended']}"])
    return rows


def render(results: dict) -> str:
    """Every table of the run, as text."""
    out = [f"amoiq-chat bench {results['started']}  ({results['machine']['cpu']}, {results['machine']['nproc']} cores;"
           f" backing: {results.get('backing', '-')})", ""]
    out += ["End-to-end messages (latency: send -> agent receipt)", table(MESSAGE_HEADERS, message_rows(results))]
    out += [f"  {name}: not available: {run['error']}" for name, run in results.get("messages", {}).items() if "error" in run]
    out.append("")
    hooks = [(name, run) for name, run in results.get("messages", {}).items() if run.get("webhooks")]
    if hooks:
        rows = [[name, run.get("offered_per_s"), run["delivered_per_s"], run["p99_ms"],
                 f"{run['webhooks']['messages']}/{run['webhooks']['expected']}", run["webhooks"]["more_than_once"],
                 run["webhooks"]["once_each"], run["webhooks"]["p50_ms"], run["webhooks"]["p99_ms"],
                 run["webhooks"]["max_ms"]] for name, run in hooks]
        out += ["Webhooks (one endpoint on a local receiver; delay: the message's commit -> the receiver)",
                table(["run", "offered/s", "chat delivered/s", "chat p99 ms", "received", "twice+", "once each",
                       "delay p50 ms", "delay p99 ms", "delay max ms"], rows), ""]
    idle = results.get("idle", {})
    if idle:
        rows, notes = [], []
        for name, run in idle.items():
            if "error" in run:
                rows.append([name, "n/a", "n/a", "n/a", "n/a", "n/a"])
                notes.append(f"  {name}: not available: {run['error']}")
            else:
                for step in run["steps"]:
                    rows.append([name, step["sockets"], step.get("open", "-"), step["rss_mib"], step["kib_per_socket"],
                                 step.get("errors", 0)])
        out += ["Idle visitor sockets (resident memory of the serving process)",
                table(["target", "sockets", "still open", "RSS MiB", "KiB/socket", "errors"], rows), *notes, ""]
    http = results.get("http", {})
    if http:
        rows = []
        for name, run in http.items():
            rows.append([name, run["requests_per_s"], run["p50_ms"], run["p99_ms"], run.get("server_cpu_us_per_request"),
                         run.get("machine_busy_pct"), run["ok"], ", ".join(f"{k}: {v}" for k, v in sorted(run["statuses"].items()))])
        notes = [f"  {name}: not available: no 2xx answer" for name, run in http.items() if not run["ok"]]
        out += ["HTTP (requests back to back, fixed concurrency)",
                table(["route", "req/s", "p50 ms", "p99 ms", "srv us/req", "busy %", "ok", "statuses"], rows), *notes, ""]
    for name, run in results.get("messages", {}).items():
        prof = run.get("profile")
        if not prof:
            continue
        if "error" in prof:
            out += [f"Profile of {name}: not available: {prof['error']}", ""]
            continue
        out.append(f"Profile of {name} (py-spy, {prof['samples']} busy samples; raw stacks in bench/results/{prof['collapsed']})")
        out += [table(["where the server's busy time goes", "%"], prof.get("parts_pct", [])), ""]
        top = prof["inclusive_pct"][0][1] if prof["inclusive_pct"] else 0   # the loop's own frames: every sample
        own, inclusive = prof["self_pct"][:15], [f for f in prof["inclusive_pct"] if f[1] < top - 0.05][:15]
        rows = [[own[i][0] if i < len(own) else "", own[i][1] if i < len(own) else None,
                 inclusive[i][0] if i < len(inclusive) else "", inclusive[i][1] if i < len(inclusive) else None]
                for i in range(max(len(own), len(inclusive)))]
        out += [table(["self", "%", "inclusive (below the loop)", "%"], rows), ""]
    out += scale_out(results)
    targets = results.get("targets", [])
    if targets:
        out += ["Targets (issue 5)", table(["target", "goal", "measured", "met"],
                                           [[t["name"], t["goal"], fmt(t["measured"], 3), t["met"]] for t in targets]), ""]
    return "\n".join(out)


def scale_out(results: dict) -> list[str]:
    """The cross-process tax (server CPU per delivered message, two processes against one) and the
    failover figure (a worker SIGKILLed under `serve --workers 2`: until its clients are served again)."""
    msgs, rows = results.get("messages", {}), []
    for mode in ("fixed", "max"):
        two = msgs.get(f"server-2p {mode}") or {}
        if "x_1p_cpu" in two:
            rows.append([f"server CPU per delivered message, 2 processes / 1 ({mode})", fmt(two["x_1p_cpu"], 2)])
    fo = results.get("failover")
    if fo and "error" in fo:
        rows.append(["failover", f"not available: {fo['error']}"])
    elif fo:
        again = fo["served_again_ms"]
        rows += [["failover: clients cut by the killed worker", f"{fo['cut']} of {fo['clients']}"
                  f" ({fo['served_again']} served again)"],
                 ["failover: from the kill to their next ack, p50 / max ms", f"{fmt(again['p50_ms'])} / {fmt(again['max_ms'])}"],
                 ["failover: from the kill to the replacement forked, ms", fmt(fo["replacement_forked_ms"])]]
    if not rows:
        return []
    return ["Scale-out and failover", table(["figure", "measured"], rows), ""]


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with what was measured and whether it is met ('n/a' when not measured)."""
    msgs = results.get("messages", {})

    def get(run: str, key: str):
        item = msgs.get(run) or {}
        return item.get(key) if "error" not in item else None

    def verdict(value, ok) -> str:
        return "n/a" if value is None else ("yes" if ok(value) else "NO")

    x_max = get("server-1p max", "x_relay_rate")
    p99 = get("server-1p fixed", "p99_ms")
    lost = get("server-1p fixed", "lost")
    check = get("server-1p fixed", "check") or {}
    one, two = get("server-1p max", "delivered_per_s"), get("server-2p max", "delivered_per_s")
    scale = ratio(two, one)
    idle = (results.get("idle", {}).get("server") or {}).get("steps") or []
    kib = max((s["kib_per_socket"] for s in idle), default=None)
    return [
        {"name": "max throughput, persisted+published, x relay", "goal": ">= 0.35 (aim 0.5)", "measured": x_max,
         "met": verdict(x_max, lambda v: v >= 0.35)},
        {"name": "p99 at 4,000 msg/s offered", "goal": "< 15 ms", "measured": p99, "met": verdict(p99, lambda v: v < 15)},
        {"name": "lost at 4,000 msg/s offered", "goal": "0", "measured": lost, "met": verdict(lost, lambda v: v == 0)},
        {"name": "every message stored once + appended", "goal": "yes", "measured": check.get("ok"),
         "met": verdict(check.get("ok"), bool)},
        {"name": "two processes / one process, max", "goal": ">= 1.6", "measured": scale,
         "met": verdict(scale, lambda v: v >= 1.6)},
        {"name": "RSS per idle visitor socket (KiB)", "goal": "<= 20", "measured": kib, "met": verdict(kib, lambda v: v <= 20)},
    ]
