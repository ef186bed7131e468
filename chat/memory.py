"""Short garbage-collection pauses, however many streams are open.

CPython's cycle collector stops the process for as long as a collection takes, and a full
collection walks every tracked object that is not frozen. Measured on this project's
2-core machine, that is about 0.8 µs an object; an open stream holds about 150 (most of
them uvicorn's and Starlette's), so with 10,000 streams open every full collection paused
the process for over a second, and idle streams, whose heartbeats keep promoting a few
new objects, made one every minute or so.

Most long-lived objects never become garbage, and an ending stream is freed by reference
counting alone (it leaves no cycle behind: ``tests/integration/test_stream.py`` checks),
so they need no collecting, only to leave the generations the collector walks:

- once start-up is done, everything is collected and frozen (:func:`freeze_start_up`);
- from then on, whenever ``limit`` objects are not frozen, :class:`Settler` collects them
  (a pause bounded by ``limit``) and freezes what survived.

Counting them matters, not the collector's own trigger: it counts allocations minus
deallocations, so while frozen objects die as fast as new ones are made (a heartbeat
replaces each idle stream's wait), the young generation grows without bound unnoticed;
120,000 young objects made a 90 ms pause in a collection of the youngest generation.

The price: a cycle among frozen objects is never collected, so an object that lived long
enough to be frozen and later dies in a cycle stays (a database connection replaced after
an outage, say). That is rare and small next to a second-long pause every minute.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from chat.metrics import time_gc_pauses

logger = logging.getLogger(__name__)

# Settle once this many objects are not frozen: at most about 10 ms of collecting on the
# machine above (young objects that refer to many frozen ones cost up to 2 µs each).
SETTLE_LIMIT = 5_000
# How often the settler looks at the collector's own counters (about 2 µs), so that a burst
# of new streams (100,000 objects a second) settles in small steps.
SETTLE_INTERVAL = 0.05  # seconds
# Counting the objects not frozen is another matter: it touches every one of them, a cache
# miss each (about 0.3 ms for 5,000 in a server with 10,000 idle streams, where counting
# them 20 times a second was a third of what the idle process did). So they are counted
# when, at the rate they came since the last count, the limit is about reached, at least
# this often, and at once when many more objects were made than freed (a burst).
COUNT_AT_LEAST_EVERY = 1.0  # seconds


def freeze_start_up() -> None:
    """Time collections from now on, and take what start-up made (modules, templates, the
    pool) out of them. What is garbage already is collected first. From now on, what
    survives any full collection is frozen too (see :func:`_freeze_survivors`)."""
    time_gc_pauses()
    gc.collect()
    gc.freeze()
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)
    logger.info("Start-up done: %d objects frozen out of garbage collection",
                gc.get_freeze_count())


def thaw() -> None:
    """Undo :func:`freeze_start_up`'s freezing (the app is stopping)."""
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After a full collection, freeze what survived it: the settler's job, done by the
    collector's own. A burst (thousands of streams opening) can keep the settler from
    its turn for a second, and meanwhile the collector ran full collections by itself,
    each walking again all that the previous ones had kept: 70, 100, 125 ... 250 ms as
    900,000 objects piled up. The collection is over when this runs, so its lists are
    whole; freezing only moves them."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


class Settler:
    """Freezes the objects that survive a collection, a few thousand at a time."""

    def __init__(self, limit: int = SETTLE_LIMIT, interval: float = SETTLE_INTERVAL,
                 longest: float = COUNT_AT_LEAST_EVERY) -> None:
        self.limit = limit
        self.interval = interval
        self.longest = longest
        self._count_at = 0.0  # when to count next (monotonic clock), at the latest
        self._counted = (time.monotonic(), 0)  # when last counted, and how many were left
        self._made_then = _net_made()  # _net_made() at the last count

    async def run(self) -> None:
        """Settle when :meth:`due`, looking every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            if self.due(time.monotonic()):
                self.settle()

    def due(self, now: float) -> bool:
        """Whether to count the objects not frozen now (see ``COUNT_AT_LEAST_EVERY``)."""
        return now >= self._count_at or _net_made() - self._made_then >= self.limit // 2

    def settle(self) -> bool:
        """Collect and freeze the objects not frozen yet if there are ``limit`` or more;
        whether it did."""
        now = time.monotonic()
        count = len(gc.get_objects())
        settled = count >= self.limit
        if settled:
            gc.collect()  # what is garbage now must not be frozen: it would never be freed
            gc.freeze()
        self._plan(now, count, 0 if settled else count)
        return settled

    def _plan(self, now: float, count: int, left: int) -> None:
        """When to count next: when ``limit`` is reached at the rate of the last while."""
        then, before = self._counted
        rate = max(0, count - before) / max(now - then, self.interval)
        wait = (self.limit - left) / rate if rate > 0 else self.longest
        self._count_at = now + min(self.longest, max(self.interval, wait))
        self._counted = (now, left)
        self._made_then = _net_made()


def _net_made() -> int:
    """About how many more tracked objects were made than freed since start-up: the young
    generation's count is that since its last collection, which came after the
    threshold's worth (cheap to read, unlike the objects themselves; and no count of
    the objects not frozen, since frozen ones die as new ones are made)."""
    young_collections: int = gc.get_stats()[0]["collections"]
    return young_collections * gc.get_threshold()[0] + gc.get_count()[0]
