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

from chat.metrics import time_gc_pauses

logger = logging.getLogger(__name__)

# Settle once this many objects are not frozen: at most about 10 ms of collecting on the
# machine above (young objects that refer to many frozen ones cost up to 2 µs each).
# Checked often, so that a burst of new streams (100,000 objects a second) settles in
# small steps; counting 5,000 objects takes about 30 µs.
SETTLE_LIMIT = 5_000
SETTLE_INTERVAL = 0.05  # seconds


def freeze_start_up() -> None:
    """Time collections from now on, and take what start-up made (modules, templates, the
    pool) out of them. What is garbage already is collected first."""
    time_gc_pauses()
    gc.collect()
    gc.freeze()
    logger.info("Start-up done: %d objects frozen out of garbage collection",
                gc.get_freeze_count())


class Settler:
    """Freezes the objects that survive a collection, a few thousand at a time."""

    def __init__(self, limit: int = SETTLE_LIMIT, interval: float = SETTLE_INTERVAL) -> None:
        self.limit = limit
        self.interval = interval

    async def run(self) -> None:
        """Settle every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.settle()

    def settle(self) -> bool:
        """Collect and freeze the objects not frozen yet if there are ``limit`` or more;
        whether it did."""
        if len(gc.get_objects()) < self.limit:  # cheap: settling keeps them few
            return False
        gc.collect()  # what is garbage now must not be frozen: it would never be freed
        gc.freeze()
        return True
