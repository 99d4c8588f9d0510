"""Sample a server process with py-spy during a load and summarise where its time goes."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

TOP = 25
# Where a sample's time goes: the first of these functions found in its stack, from the top (innermost frame)
# down. The names are the server's own (src/amoiq_chat), so a rename shows up as "other".
PARTS = (
    ("message writer: PostgreSQL statement", ("MessageWriter._store", "MessageWriter._cursor")),
    ("message writer: Redis publish + XADD", ("MessageWriter._announce", "Announcer.")),
    ("message writer: events, acks, local delivery", ("MessageWriter.",)),
    ("bus listener: Redis read + hand to sockets", ("Bus._listen", "Bus._read", "Hub.deliver")),
    ("socket writes: frames out at the end of the tick", ("Socket.flush", "Socket.emit", "Sequencer.put",
                                                          "Sequencer.deliver", "Sequencer._work",
                                                          "Sequencer._send_in_order", "Socket.send")),
    ("socket reads: parse, validate, dispatch", ("read_frames", "Registry.dispatch", "on_message")),
    ("heartbeat sweeps", ("Heartbeat.",)),
    ("HTTP handlers and middlewares", ("_handle", "middleware")),
    # Resumed coroutines whose caller py-spy cannot see: by library.
    ("Redis client, resumed elsewhere", ("AbstractConnection.", "_AsyncRESP", "StreamReader.", "StreamWriter.", "Pipeline.")),
    ("PostgreSQL client (aiopg), resumed elsewhere", ("Connection._poll", "Connection._ready", "Cursor.")),
    ("aiohttp WebSocket, resumed elsewhere", ("WebSocketResponse.", "WebSocketWriter.", "data_received")),
)
# The innermost Python frame of a sample taken while uvloop runs its own code (serve's asyncio.run;
# aiohttp's run_app before 2026-11-30).
LOOP_ROOTS = ("Runner.run (runners.py)", "run_app (web.py)")


def part_of(frames: list[str]) -> str:
    """The PARTS label of one stack (innermost frame last); the loop itself when only the loop is there."""
    for label, names in PARTS:
        for frame in reversed(frames):
            if any(name in frame for name in names):
                return label
    if frames and frames[-1].startswith(LOOP_ROOTS):
        return "event loop itself (uvloop: polling, socket I/O, callbacks)"
    return "other"


def start(pid: int, duration: float) -> dict | None:
    """Start `py-spy record` on pid for `duration` s (collapsed stacks); None if py-spy is missing."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return {"error": "py-spy is not installed (pip install '.[bench]')"}
    out = Path(f"/tmp/amoiq-bench-pyspy-{pid}.txt")
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))), "--rate", "250",
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {"proc": proc, "out": out}


def summarise(collapsed: str) -> dict:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    parts: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
                  for f in stack.split(";")]
        own[frames[-1]] += n
        parts[part_of(frames)] += n
        for frame in set(frames):
            inclusive[frame] += n
    share = lambda c: [[name, round(100 * n / total, 1)] for name, n in c.most_common(TOP)] if total else []  # noqa: E731
    return {"samples": total, "parts_pct": share(parts), "self_pct": share(own), "inclusive_pct": share(inclusive)}


async def finish(spy: dict, folder: Path, started: str) -> dict:
    """Wait for py-spy, keep its raw output under folder, return the summary."""
    if "error" in spy:
        return spy
    proc = spy["proc"]
    try:
        _, err = await asyncio.wait_for(asyncio.to_thread(proc.communicate), 60)
    except asyncio.TimeoutError:
        proc.kill()
        return {"error": "py-spy did not finish"}
    if proc.returncode != 0 or not spy["out"].exists():
        return {"error": f"py-spy failed ({proc.returncode}): {err.decode(errors='replace').strip()[-300:]}"}
    text = spy["out"].read_text(errors="replace")
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"profile-{started.replace(':', '').replace('-', '')}.collapsed.txt"
    kept.write_text(text)
    spy["out"].unlink(missing_ok=True)
    return {"collapsed": str(kept.name), **summarise(text)}
