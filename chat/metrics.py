"""Prometheus metrics of the real-time core, served at ``/metrics`` by every process."""

from __future__ import annotations

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
