"""Rounds of the suite, and before/after comparisons: `python -m bench --rounds N [--baseline REV]`.

One run per figure is one draw from a shared machine that drifts by a third within minutes.
`--rounds N` runs the selected parts N times and shows each figure's median and range.
`--baseline REV` runs every round twice, once serving REV's server (a git worktree of it, or a
directory holding a checkout) and once serving this tree's, in alternating order (REV first in
odd rounds), so that a drift weighs on both sides alike. The load generator, the relay and the
checks are this tree's on both sides: only the server differs.

Each run is a `python -m bench` process of its own with the same arguments (minus these two),
so every run starts its relay, server, database and Redis afresh, exactly as a single run does.
Their tables go to var/bench/round-*.log, their JSON to bench/results/, and the comparison to
bench/results/rounds-<timestamp>.json.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

from .report import fmt, table
from .target import RESULTS, ROOT, VAR, git, server_checkout

OWN_FLAGS = ("--rounds", "--baseline", "--json")   # each takes a value; a round's command line drops them
STOP_TIMEOUT = 60.0   # seconds an interrupted run may take to stop its children

# (label, key in a message run, digits): the figures a round contributes per message run.
MESSAGE_FIGURES = (
    ("msg/s", "delivered_per_s", 0),
    ("x relay", "x_relay_rate", 3),
    ("p50 ms", "p50_ms", 1),
    ("p99 ms", "p99_ms", 1),
    ("srv us/msg", "server_cpu_us_per_msg", 1),
    ("pg us/msg", "pg_cpu_us_per_msg", 1),
    ("redis us/msg", "redis_cpu_us_per_msg", 1),
    ("busy %", "machine_busy_pct", 1),
    ("lost", "lost", 0),
)
HTTP_FIGURES = (("req/s", "requests_per_s", 0), ("p99 ms", "p99_ms", 1), ("srv us/req", "server_cpu_us_per_request", 1))


def round_argv(argv: list[str]) -> list[str]:
    """The command line of one run: `argv` without this module's flags and their values."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in OWN_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in OWN_FLAGS)):
            out.append(arg)
    return out


def figures(results: dict) -> dict[str, tuple[float | bool, int]]:
    """Every figure of one run worth comparing, by label: (value, digits); a check's value is a bool."""
    out: dict[str, tuple[float | bool, int]] = {}
    for name, run in results.get("messages", {}).items():
        if "error" in run:
            continue
        if name.startswith("relay"):
            out[f"{name}: msg/s"] = (run["delivered_per_s"], 0)
            continue
        for label, key, digits in MESSAGE_FIGURES:
            if run.get(key) is not None and not (key == "x_relay_rate" and run["mode"] == "fixed"):
                out[f"{name}: {label}"] = (run[key], digits)
        if run.get("pg_commits_per_msg"):
            out[f"{name}: msg/commit"] = (round(1 / run["pg_commits_per_msg"], 1), 1)
        if run.get("check"):
            out[f"{name}: stored once + appended"] = (bool(run["check"].get("ok")), 0)
    for target in results.get("targets", []):
        if target["name"].startswith("two processes") and target["measured"] is not None:
            out["two processes / one, max"] = (target["measured"], 3)
    for name, run in results.get("idle", {}).items():
        for step in run.get("steps", []):
            out[f"idle {name} {step['sockets']}: KiB/socket"] = (step["kib_per_socket"], 2)
    for name, run in results.get("http", {}).items():
        for label, key, digits in HTTP_FIGURES:
            if run.get(key) is not None and run.get("ok"):
                out[f"HTTP {name}: {label}"] = (run[key], digits)
    return out


def spread(values: list[float], digits: int) -> tuple[str, str]:
    """(median, 'low-high') of one side's values, as table cells; for a check, in how many runs it held."""
    if not values:
        return "-", "-"
    if all(isinstance(v, bool) for v in values):
        return ("yes" if all(values) else "NO"), f"{sum(values)} of {len(values)}"
    median = statistics.median(values)
    low, high = min(values), max(values)
    return fmt(round(median, digits), digits), f"{fmt(round(low, digits), digits)}-{fmt(round(high, digits), digits)}"


def summary_rows(runs: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    """The comparison table: per figure, each side's median and range (and the change of the median)."""
    sides = list(runs)
    per_side = {side: [figures(r) for r in results] for side, results in runs.items()}
    labels: dict[str, int] = {}
    for side in sides:
        for figs in per_side[side]:
            for label, (_, digits) in figs.items():
                labels.setdefault(label, digits)
    headers = ["figure"]
    for side in sides:
        headers += [f"{side} median", f"{side} range"]
    if len(sides) == 2:
        headers.append("change")
    rows = []
    for label, digits in labels.items():
        row, medians = [label], []
        for side in sides:
            values = [figs[label][0] for figs in per_side[side] if label in figs]
            row += list(spread(values, digits))
            medians.append(statistics.median(values) if values and not isinstance(values[0], bool) else None)
        if len(sides) == 2:
            before, after = medians
            numbers = before and after is not None and not isinstance(before, bool)
            row.append(f"{100 * (after - before) / before:+.1f} %" if numbers else "-")
        rows.append(row)
    return headers, rows


def worktree_for(rev: str) -> tuple[Path, str, bool]:
    """(checkout, commit, made here): a directory as it is, else a detached worktree of `rev`."""
    if Path(rev).is_dir():
        return Path(rev).resolve(), git("rev-parse", "--short", "HEAD", cwd=Path(rev)) or rev, False
    commit = git("rev-parse", "--short", f"{rev}^{{commit}}")
    if not commit:
        raise SystemExit(f"--baseline {rev}: neither a directory nor a git revision of {ROOT}")
    path = VAR / f"baseline-{commit}"
    if path.exists():
        git("worktree", "remove", "--force", str(path))
    VAR.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), commit], cwd=ROOT,
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise SystemExit(f"--baseline {rev}: git worktree add failed: {made.stderr.strip()}")
    return path, commit, True


def one_run(argv: list[str], label: str, server_src: Path, stamp: str) -> dict | None:
    """One `python -m bench` run serving `server_src`'s server; its results, or None (the reason is printed)."""
    out = RESULTS / f"rounds-{stamp}-{label}.json"
    log = VAR / f"round-{stamp}-{label}.log"
    env = dict(os.environ)
    env.pop("BENCH_SERVER_SRC", None)
    if server_src != ROOT:
        env["BENCH_SERVER_SRC"] = str(server_src)
    started = time.monotonic()
    # The run's progress bar shows on a terminal, its tables go to the log. It has a process group
    # of its own: on Ctrl-C (or SIGTERM) this process passes it one SIGINT, which the run takes as
    # its own Ctrl-C (it stops its relay, servers and services), and waits for it.
    with open(log, "wb") as sink:
        child = subprocess.Popen([sys.executable, "-m", "bench", *argv, "--json", str(out)], cwd=ROOT, env=env,
                                 stdout=sink, stderr=None if sys.stderr.isatty() else subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
    seconds = time.monotonic() - started
    if child.returncode != 0 or not out.exists():
        print(f"  {label}: failed (exit {child.returncode}) after {seconds:.0f} s; see {log.relative_to(ROOT)}",
              file=sys.stderr)
        return None
    results = orjson.loads(out.read_bytes())
    headline = results.get("messages", {}).get("server-1p max", {}).get("x_relay_rate")
    print(f"  {label}: {seconds:.0f} s" + (f", one process at maximum {headline:.3f}x the relay" if headline else ""),
          file=sys.stderr)
    return results


def main(args, argv: list[str]) -> int:
    """Run the rounds; print the comparison table; write its JSON."""
    VAR.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    argv = round_argv(argv)
    this_src = server_checkout()   # as in a single run
    this = git("rev-parse", "--short", "HEAD", cwd=this_src) or str(this_src)
    if git("status", "--porcelain", "--untracked-files=no", cwd=this_src):
        this += "+changes"
    base_path = base_commit = None
    made = False
    if args.baseline:
        base_path, base_commit, made = worktree_for(args.baseline)
    sides = (["base"] if args.baseline else []) + ["this"]
    commits = {"base": base_commit, "this": this}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    interrupted = False
    try:
        for n in range(1, args.rounds + 1):
            print(f"round {n}/{args.rounds}", file=sys.stderr)
            order = sides if n % 2 else sides[::-1]
            for side in order:
                results = one_run(argv, f"{n}-{side}", base_path if side == "base" else this_src, stamp)
                if results is not None:
                    runs[side].append(results)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: the runs so far follow", file=sys.stderr)
    finally:
        if made:
            git("worktree", "remove", "--force", str(base_path))
    headers, rows = summary_rows(runs)
    counts = ", ".join(f"{side} = {commits[side]}: {len(results)} of {args.rounds} runs" for side, results in runs.items())
    print(f"amoiq-chat bench rounds {stamp}  ({counts}; arguments: {' '.join(argv) or '-'})")
    print(table(headers, rows))
    path = RESULTS / f"rounds-{stamp}.json"
    path.write_bytes(orjson.dumps({"started": stamp, "argv": argv, "rounds": args.rounds, "baseline": args.baseline,
                                   "sides": {side: commits[side] for side in sides}, "headers": headers, "rows": rows,
                                   "runs": {side: [r["started"] for r in results] for side, results in runs.items()}},
                                  option=orjson.OPT_INDENT_2))
    print(f"results: {path.relative_to(ROOT)}")
    return 130 if interrupted else 0
