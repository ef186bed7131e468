"""Prometheus metrics of the real-time core, served at ``/metrics`` by every process."""

from __future__ import annotations

import gc
import time

from prometheus_client import Counter, Gauge, Histogram

STREAMS_OPEN = Gauge("chat_streams_open", "SSE streams open in this process", ["audience"])
EVENTS_SENT = Counter(
    "chat_stream_events", "SSE events sent, by where they came from", ["audience", "source"]
)
STREAMS_DROPPED = Counter(
    "chat_streams_dropped", "Streams disconnected because their consumer fell behind",
    ["audience"],
)
STREAM_RELOADS = Counter(
    "chat_stream_reloads", "Streams told to reload: their cursor could not be served",
    ["audience", "reason"],
)
GAP_FILLS = Counter(
    "chat_stream_gap_fills", "Live entries that arrived before an earlier one (filled from the DB)",
    ["audience"],
)
DELIVERY_LAG = Histogram(
    "chat_delivery_lag_seconds", "From publishing a change to a stream handling it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BROKER_RECONNECTS = Counter(
    "chat_broker_reconnects", "Times the Redis subscriber reconnected after losing Redis"
)
BROKER_SUBSCRIPTIONS = Gauge(
    "chat_broker_subscriptions", "Local subscriptions (one per open stream)"
)
ASYNCIO_TASKS = Gauge("chat_asyncio_tasks", "Asyncio tasks alive in this process (leak check)")
REPAIRS = Counter(
    "chat_repairs",
    "Conversations whose publish never reached this process, rung by the repair check",
)
GC_PAUSE = Histogram(
    "chat_gc_pause_seconds", "How long each garbage collection stopped the process",
    ["generation"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5),
)
GC_PAUSE_MAX = Gauge(
    "chat_gc_pause_max_seconds", "The longest single garbage collection since the process started"
)


class _PauseTimer:
    """A ``gc.callbacks`` hook that times each collection into ``GC_PAUSE``.

    It runs inside the collector, at any allocation of any thread, so it takes only the
    locks of values it owns: the histogram's children are made up front, since making one
    takes the metric's lock, which the thread the collection interrupted may hold.
    """

    def __init__(self) -> None:
        self._by_generation = [GC_PAUSE.labels(str(g)) for g in range(3)]
        self._started = 0.0
        self.longest = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self._by_generation[info["generation"]].observe(pause)
        if pause > self.longest:
            self.longest = pause
            GC_PAUSE_MAX.set(pause)


_pause_timer = _PauseTimer()


def time_gc_pauses() -> None:
    """Time every garbage collection from now on (once per process, however often called)."""
    if _pause_timer not in gc.callbacks:
        gc.callbacks.append(_pause_timer)
