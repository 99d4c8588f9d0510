"""cancel_and_wait: stops a task even when it swallows one cancel; bounded; keeps the caller's cancel."""
import asyncio

import pytest

from amoiq_chat.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancel_is_cancelled_again():
    swallowed = asyncio.Event()

    async def stubborn():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # like a read that turns the cancel into "timed out, no data"
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert swallowed.is_set() and task.cancelled()


async def test_a_task_that_never_stops_is_given_up_on_after_the_timeout(caplog):
    release = asyncio.Event()

    async def immortal():
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(immortal(), name="immortal")
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, timeout=0.3), 5)
    assert not task.done()
    assert "immortal did not stop" in caplog.text
    release.set()
    await task


async def test_the_callers_own_cancel_is_not_swallowed():
    async def slow_to_stop():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)
            raise

    inner = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    outer = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0.05)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    await asyncio.wait({inner}, timeout=2)
    assert inner.cancelled()
