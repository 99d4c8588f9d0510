"""The one Redis call that announces a stored batch: PUBLISH each message's event to its conversation,
XADD its webhook job to `meta:webhook_jobs`, refresh `session:{sessionId}` entries."""
from __future__ import annotations

import hashlib
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from .rooms import SESSION_TTL, WEBHOOK_STREAM, conversation, session_entry, session_key

# session:{sessionId} is refreshed at most this often per session by one announcer (seconds).
SESSION_REFRESH = 30.0

# ARGV: message count, session TTL, then per message (channel, event, outbox id or "" when the
# message has no webhook job, message id, tenant id), then (key, value) of each session:{id} to
# refresh. One call, one reply. Every message gets its stream entry (SPEC section 8); one
# without an outbox id has nobody to be delivered to, and the worker only acknowledges it.
ANNOUNCE = """
local count = tonumber(ARGV[1])
local i = 3
for _ = 1, count do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] == '' then
    redis.call('XADD', KEYS[1], '*', 'message_id', ARGV[i + 3], 'tenant_id', ARGV[i + 4])
  else
    redis.call('XADD', KEYS[1], '*', 'outbox_id', ARGV[i + 2], 'message_id', ARGV[i + 3], 'tenant_id', ARGV[i + 4])
  end
  i = i + 5
end
while i < #ARGV do
  redis.call('SET', ARGV[i], ARGV[i + 1], 'EX', ARGV[2])
  i = i + 2
end
return count
"""

class Announcer:
    """A writer task's own Redis connection, for its one ANNOUNCE call per batch (calls never overlap).

    Taken from the app's pool once and kept: redis-py's per-command path (taking a pooled
    connection and giving it back, its retry and event layers) cost the server about as much
    CPU as the call itself, ~90 us per batch. The call is packed once and sent as EVALSHA
    (EVAL when Redis has lost its scripts). After an error the connection is closed and given
    back, and the next call takes one again.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._pool = redis.connection_pool
        self._conn: Any = None
        self._sha = hashlib.sha1(ANNOUNCE.encode()).hexdigest()
        self._refreshed: dict[str, float] = {}  # session id -> when session:{id} was last refreshed

    async def announce(self, messages: list[tuple[dict, int | None, dict | None]], events: list[bytes]) -> None:
        """One call for a stored batch: each (message row, outbox id or None, session row or None) and its
        encoded event: PUBLISH to its conversation, XADD its stream entry, refresh its session's entry."""
        if not messages:
            return
        args: list[Any] = [len(messages), SESSION_TTL]
        for (row, outbox_id, _), data in zip(messages, events):
            args += [conversation(row["session_id"]), data, "" if outbox_id is None else outbox_id, row["id"],
                     row["tenant_id"]]
        now = time.monotonic()
        for row, _, session in messages:
            sid = row["session_id"]
            if session is not None and now - self._refreshed.get(sid, -SESSION_REFRESH) >= SESSION_REFRESH:
                self._refreshed[sid] = now
                args += [session_key(sid), session_entry(session)]
        await self(args)
        if len(self._refreshed) > 10000:
            self._refreshed = {sid: t for sid, t in self._refreshed.items() if now - t < SESSION_REFRESH}

    async def __call__(self, args: list[Any]) -> Any:
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._pool.get_connection()
        try:
            try:
                return await self._send(conn, "EVALSHA", self._sha, args)
            except NoScriptError:  # Redis restarted, or its scripts were flushed: EVAL loads it again
                return await self._send(conn, "EVAL", ANNOUNCE, args)
        except BaseException:
            self._conn = None
            await conn.disconnect()
            await self._pool.release(conn)
            raise

    async def close(self) -> None:
        """Give the connection back to the pool."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)

    @staticmethod
    async def _send(conn: Any, command: str, script: str, args: list[Any]) -> Any:
        await conn.send_packed_command(resp_command((command, script, 1, WEBHOOK_STREAM, *args)), check_health=False)
        return await conn.read_response()


def resp_command(args: tuple[Any, ...]) -> bytes:
    """One Redis command as RESP bytes: an array of bulk strings (bytes as they are, str as UTF-8,
    numbers in decimal). redis-py's `pack_command` makes the same bytes but copies its buffer
    once per argument: 76 us for a 25-message ANNOUNCE against 23 here."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)
