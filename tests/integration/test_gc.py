"""The process times its garbage collections, and keeps what start-up made out of them."""

from __future__ import annotations

import re

from tests.support import AppProcess


async def test_collections_are_timed_and_start_up_objects_are_frozen(app: AppProcess) -> None:
    # The lifespan collects once before freezing: at least that one full collection.
    assert await app.metric('chat_gc_pause_seconds_count{generation="2"}') >= 1
    longest = await app.metric("chat_gc_pause_max_seconds")
    assert 0 < longest < 10
    frozen = re.search(r"(\d+) objects frozen out of garbage collection", app.output())
    assert frozen is not None and int(frozen.group(1)) > 10_000, app.output()
