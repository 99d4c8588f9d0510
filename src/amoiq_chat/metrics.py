"""Prometheus metrics: every metric object of the application in one place (`Metrics`, one per app),
the multiprocess directory `serve --workers N` prepares, and the text a scrape answers.

Counts that hot paths already keep as plain integers (the bus's events, frames written) are
copied into their counters by `sync()`, which runs before each scrape and every few seconds
(so another process's share is at most SYNC_INTERVAL old); everything else is counted where it
happens. With `PROMETHEUS_MULTIPROC_DIR` set (by `prepare_multiprocess`, before the workers
start), every process writes its values to files there and a scrape of any of them sums all.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import tempfile
from typing import Callable, Iterator, MutableMapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess, values

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SYNC_INTERVAL = 5.0
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SOCKET_KINDS = {"v": "visitor", "s": "staff"}  # a Connection's kind (its bus audience) -> label


def kind_label(kind: str) -> str:
    """The `kind` label of a socket."""
    return SOCKET_KINDS.get(kind, kind)


def prepare_multiprocess(env: MutableMapping[str, str]) -> str:
    """Give the workers about to start an empty directory for their metric files (the one in
    `env[PROMETHEUS_MULTIPROC_DIR]`, else a new temporary one) and name it in `env`; return it.
    Call before the first worker starts, whatever starts them."""
    path = env.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="amoiq-metrics-")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
    env[MULTIPROC_ENV] = path
    if env is os.environ:
        choose_value_storage()
    return path


def choose_value_storage() -> None:
    """Let prometheus-client choose its value storage again, now that the directory is named: it
    chooses once, when first imported, and a supervisor that imported it before forking its
    workers would otherwise give them values of their own. (The one use of `prometheus_client.values`.)"""
    values.ValueClass = values.get_value_class()


@contextlib.contextmanager
def multiprocess_metrics(env: MutableMapping[str, str]) -> Iterator[str]:
    """`prepare_multiprocess(env)` for the time the workers run; a directory made here is removed after."""
    made = not env.get(MULTIPROC_ENV)
    path = prepare_multiprocess(env)
    owner = os.getpid()
    try:
        yield path
    finally:
        # Only the process that made it removes it: a worker forked inside this block that exits
        # (a reload, a crash) unwinds this same frame, and must leave the shared directory alone.
        if made and os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)


def multiprocess_dir() -> str | None:
    """The directory shared by the workers, when this process is one of several."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """This process's metric objects. Other parts count through these attributes (never a metric
    of their own elsewhere), or register a plain counter they keep with `watch`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("amoiq_http_requests", "HTTP requests answered, by method, route template and status",
                                     ["method", "route", "status"], registry=r)
        self.http_latency = Histogram("amoiq_http_request_duration_seconds", "Time to answer an HTTP request",
                                      ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.sockets_open = Gauge("amoiq_websockets_open", "Open WebSockets, by kind (visitor, staff)", ["kind"],
                                  multiprocess_mode="livesum", registry=r)
        self.sockets_closed = Counter("amoiq_websockets_closed", "WebSockets closed, by kind and close code",
                                      ["kind", "code"], registry=r)
        self.frames_in = Counter("amoiq_ws_frames_received", "Text frames received, by socket kind", ["kind"], registry=r)
        self.frames_out = Counter("amoiq_ws_frames_sent", "Frames written to sockets, by socket kind", ["kind"], registry=r)
        self.messages_stored = Counter("amoiq_messages_stored", "Messages stored (repeated clientMessageIds not counted)",
                                       registry=r)
        self.batch_size = Histogram("amoiq_writer_batch_size", "Messages per writer batch", buckets=BATCH_SIZES, registry=r)
        self.batch_seconds = Histogram("amoiq_writer_batch_seconds", "Time to store one writer batch",
                                       buckets=BATCH_SECONDS, registry=r)
        self.bus_publishes = Counter("amoiq_bus_publishes", "Events published to Redis pub/sub", registry=r)
        self.bus_deliveries = Counter("amoiq_bus_deliveries", "Events received from Redis pub/sub", registry=r)
        self.bus_reconnects = Counter("amoiq_bus_reconnects", "Reconnections of the bus's subscription connection",
                                      registry=r)
        self.rate_limited = Counter("amoiq_rate_limited", "Requests and frames refused by a rate limit, by scope "
                                    "(http, auth, ws)", ["scope"], registry=r)
        # For the assistant, the escalation queue and the webhook worker.
        self.assistant_replies = Counter("amoiq_assistant_replies", "Assistant replies, by outcome", ["outcome"],
                                         registry=r)
        self.queue_waiting = Gauge("amoiq_queue_waiting_sessions", "Sessions waiting for an agent (all tenants)",
                                   multiprocess_mode="mostrecent", registry=r)
        self.webhook_attempts = Counter("amoiq_webhook_attempts", "Webhook delivery attempts, by outcome",
                                        ["outcome"], registry=r)
        # Plain tallies kept by hot paths (a dict add instead of a metric's lock), synced by sync().
        self.frames_in_tally: collections.Counter[str] = collections.Counter()
        self.frames_out_tally: collections.Counter[str] = collections.Counter()
        self._synced: collections.Counter[tuple[str, str]] = collections.Counter()
        self._watched: list[tuple[Counter, Callable[[], int], list[int]]] = []

    def watch(self, counter: Counter, read: Callable[[], int]) -> None:
        """Copy a monotonic count kept elsewhere (`read()`) into `counter` on each sync."""
        self._watched.append((counter, read, [read()]))

    def sync(self) -> None:
        """Bring the tallies and the watched counts into their counters."""
        for way, counter, tally in (("in", self.frames_in, self.frames_in_tally),
                                    ("out", self.frames_out, self.frames_out_tally)):
            for kind, count in tally.items():
                delta = count - self._synced[(way, kind)]
                if delta > 0:
                    counter.labels(kind_label(kind)).inc(delta)
                    self._synced[(way, kind)] = count
        for counter, read, last in self._watched:
            value = read()
            if value > last[0]:
                counter.inc(value - last[0])
            last[0] = value

    async def sync_forever(self, interval: float = SYNC_INTERVAL) -> None:
        """Sync every `interval` seconds until cancelled (a failure is logged, the loop goes on)."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.sync()
            except Exception:
                log.exception("metrics sync failed")

    def observe_batch(self, size: int, stored: int, seconds: float) -> None:
        """The writer stored a batch (MessageWriter.on_batch)."""
        self.messages_stored.inc(stored)
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> bytes:
        """The text format of every process's metrics (this one's alone without a multiprocess directory)."""
        self.sync()
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)

    def process_exited(self) -> None:
        """At shutdown: drop this process's live gauges (its counters stay in the sums)."""
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())
