"""A small map whose entries lapse: what a hot path may reuse for a few seconds."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """Values kept ``seconds`` after they were loaded. Past ``limit`` keys it starts afresh:
    simpler than an LRU, and a burst of new keys costs only loads that happen anyway."""

    def __init__(self, seconds: float, limit: int = 10_000) -> None:
        self.seconds, self.limit = seconds, limit
        self._entries: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The value kept for ``key``, or what ``load`` gives now (kept if it returns:
        a failure is asked again next time)."""
        now = time.monotonic()
        kept = self._entries.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        value = await load()
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (now + self.seconds, value)
        return value
