"""A subscription that holds state updates for a tick: what it keeps, and when it lets go.

Payloads here are ``key:version`` for updates that may wait and anything else for ones
that may not, so the tests read as the order of events they describe.
"""

from __future__ import annotations

import asyncio

from chat.broker import DROP, RESYNC, Deferred, Delivery, Item, Subscription

TICK = 0.05


def deferrable(delivery: Delivery) -> Deferred:
    if delivery.payload.startswith(b"unwanted"):
        return DROP
    key, _, version = delivery.payload.decode().partition(":")
    return (key, int(version)) if version else None


def update(key: str, version: int) -> Delivery:
    return Delivery("site", f"{key}:{version}".encode())


def urgent(name: str) -> Delivery:
    return Delivery("site", name.encode())


def payloads(items: list[Item]) -> list[str]:
    return [item.payload.decode() if isinstance(item, Delivery) else "RESYNC"
            for item in items]


async def woken(sub: Subscription, timeout: float = 5.0) -> list[Item]:
    """What a consumer takes when it wakes: the first item and all that is ready with it."""
    async with asyncio.timeout(timeout):
        return [await sub.get(), *sub.ready()]


async def test_updates_that_may_wait_come_out_together_once_the_tick_has_passed() -> None:
    sub = Subscription(defer=deferrable, tick=TICK)
    for version in range(1, 6):
        sub.offer(update("row-1", version))
    sub.offer(update("row-2", 1))
    assert sub.pending() == 2  # one per state: only the newest version of each is kept

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert payloads(await woken(sub)) == ["row-1:5", "row-2:1"]
    assert loop.time() - started >= TICK * 0.45  # held for (half to all of) the tick
    assert sub.pending() == 0


async def test_an_older_version_arriving_late_does_not_replace_the_newer_one() -> None:
    sub = Subscription(defer=deferrable, tick=TICK)
    sub.offer(update("row-1", 7))
    sub.offer(update("row-1", 6))  # overtaken on its way, say from another process
    assert payloads(await woken(sub)) == ["row-1:7"]


async def test_a_delivery_that_cannot_wait_is_not_held_and_takes_the_held_along() -> None:
    sub = Subscription(defer=deferrable, tick=60)  # a tick that never passes in this test
    sub.offer(update("row-1", 1))
    sub.offer(urgent("entry"))
    assert payloads(await woken(sub, timeout=1)) == ["entry", "row-1:1"]

    sub.offer(update("row-1", 2))
    assert sub.ready() == [update("row-1", 2)]  # taken early, so nothing is left to release
    sub.offer(urgent("next"))
    assert payloads(await woken(sub, timeout=1)) == ["next"]


async def test_a_resync_drops_what_was_held_and_the_tick_then_wakes_no_one() -> None:
    sub = Subscription(defer=deferrable, tick=TICK)
    sub.offer(update("row-1", 1))
    sub.offer(RESYNC)  # the consumer re-reads every state anyway
    assert payloads(await woken(sub)) == ["RESYNC"]

    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(TICK * 3)  # the tick armed by row-1 passes with nothing held
    assert not waiting.done()
    sub.offer(urgent("later"))
    assert payloads([await waiting]) == ["later"]


async def test_without_defer_every_delivery_is_queued_at_once() -> None:
    sub = Subscription()
    sub.offer(update("row-1", 1))
    sub.offer(update("row-1", 2))
    assert payloads(await woken(sub, timeout=1)) == ["row-1:1", "row-1:2"]


async def test_what_the_consumer_has_no_use_for_is_dropped_on_arrival() -> None:
    sub = Subscription(defer=deferrable, tick=TICK)
    sub.offer(urgent("unwanted"))
    sub.offer(update("unwanted-row", 1))
    assert sub.pending() == 0  # neither queued nor held, and nothing woke
    sub.offer(urgent("reload"))
    assert payloads(await woken(sub)) == ["reload"]


async def test_a_wait_within_a_time_ends_with_none_when_nothing_came() -> None:
    sub = Subscription()
    assert await sub.get_within(TICK) is None
    sub.offer(urgent("after"))
    item = await sub.get_within(TICK)
    assert isinstance(item, Delivery) and item.payload == b"after"


async def test_a_delivery_ends_a_wait_within_a_time_at_once_and_cancels_its_timer() -> None:
    sub = Subscription()
    loop = asyncio.get_running_loop()
    loop.call_later(TICK / 5, sub.offer, urgent("news"))
    async with asyncio.timeout(5):
        item = await sub.get_within(60)
    assert isinstance(item, Delivery) and item.payload == b"news"
    assert await sub.get_within(TICK) is None  # the first wait's timer is gone with it
