"""The assistant's replies: made off the sockets' read loops, in a supervised task set.

`ReplyTasks` runs at most `concurrency` replies at once; a session's replies run one after
another in the order its messages were stored; `stop()` cancels whatever is left. `Responder`
is the `after_visitor_message` hook: it queues the reply, and the reply itself checks the
session is still the assistant's, escalates when the visitor asks for a person, shows `typing`,
asks the assistant and stores its answer through the writer (an AI reply is a message).
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Awaitable, Callable

import aiopg

from ..assistant import Assistant, Conversation, wants_person
from ..bus import FOR_VISITORS
from ..errors import ApiError
from ..jsonutil import now_iso
from ..store import support as store
from ..tasks import cancel_and_wait
from .chat import publish_typing
from .support import Support
from .batches import Stored

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
PER_SESSION_MAX = 20  # replies a session may have waiting; more are dropped (a visitor flooding the assistant)
HISTORY = 10  # recent messages the model sees


class ReplyTasks:
    """A bounded, supervised set of reply tasks: one per session with work, at most `concurrency` running."""

    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._queues: dict[str, collections.deque[Job]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self.done = 0
        self.dropped = 0

    def submit(self, session_id: str, job: Job) -> bool:
        """Queue a job behind the session's earlier ones; False when refused (stopping, or too many waiting)."""
        if self._closed:
            return False
        queue = self._queues.get(session_id)
        if queue is not None:
            if len(queue) >= PER_SESSION_MAX:
                self.dropped += 1
                log.warning("session %s has %d replies waiting; dropping one", session_id, len(queue))
                return False
            queue.append(job)
            return True
        self._queues[session_id] = collections.deque((job,))
        task = asyncio.create_task(self._drain(session_id), name=f"reply-{session_id}")
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _drain(self, session_id: str) -> None:
        queue = self._queues[session_id]
        try:
            while queue:
                async with self._slots:
                    try:
                        await queue[0]()
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # one bad reply never stops the session's next ones
                        log.exception("a reply in session %s failed", session_id)
                self.done += 1
                queue.popleft()
        finally:
            if self._queues.get(session_id) is queue:
                del self._queues[session_id]

    async def idle(self) -> None:
        """Wait until no reply is queued or running."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Refuse new jobs and cancel the running ones (each ends within cancel_and_wait's timeout)."""
        self._closed = True
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._tasks)))


class Responder:
    """The assistant's side of the chat: answers each new visitor message of a session it holds."""

    def __init__(self, pool: aiopg.Pool, assistant: Assistant, support: Support, tasks: ReplyTasks) -> None:
        self.pool = pool
        self.assistant = assistant
        self.support = support
        self.tasks = tasks

    async def after_visitor_message(self, session: dict, stored: Stored) -> None:
        """The chat hook: queue the reply (returns at once)."""
        self.tasks.submit(session["session_id"], lambda: self.answer(stored))

    async def answer(self, stored: Stored) -> None:
        """Answer one visitor message, unless an agent or the queue has the session."""
        row = stored.row
        session_id, text = row["session_id"], row["message"]
        async with self.pool.acquire() as conn:
            context = await store.reply_context(conn, session_id, stored.seq)
            if context is None or context["status"] != "active" or not context["ai_mode"]:
                return
            if wants_person(text):
                try:
                    await self.support.escalate(context["tenant_id"], session_id, reason="customer_requested_human")
                except ApiError as exc:  # closed or gone meanwhile
                    log.info("escalating %s: %s", session_id, exc.message)
                return
            history = await store.recent_messages(conn, session_id, stored.seq, HISTORY)
        await self._typing(session_id, True)
        texts = await self.assistant.reply(Conversation(
            text=text, first=context["first"], welcome_message=context["welcome_message"],
            faq=context["faq"] or [], business_name=context["business_name"],
            history=[(m["sender_type"], m["message"]) for m in history]))
        for reply in texts:
            async with self.pool.acquire() as conn:
                if not await store.with_assistant(conn, session_id):  # an agent took it, or it was escalated
                    await self._typing(session_id, False)
                    return
            await self.support.say(row, reply)

    async def _typing(self, session_id: str, on: bool) -> None:
        frame = {"type": "typing", "sessionId": session_id, "isTyping": on, "sender": "ai",
                 "agentName": self.assistant.name, "timestamp": now_iso()}
        await publish_typing(self.support.bus, session_id, frame, FOR_VISITORS, "")
