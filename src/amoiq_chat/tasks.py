"""Small helpers for the background tasks of the application."""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task | None, timeout: float = 5.0) -> None:
    """Cancel a task (if any) and wait, at most `timeout` seconds, until it has finished.

    The cancel is repeated until the task ends: a library that turns a cancel arriving with a
    read timeout into "no data yet" would otherwise swallow it and hang the shutdown. Waiting
    with asyncio.wait keeps the caller's own cancellation intact.
    """
    if task is None or task.done():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("task %s did not stop within %.0f s after being cancelled", task.get_name(), timeout)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.5, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.warning("task %s ended with %r", task.get_name(), task.exception())
