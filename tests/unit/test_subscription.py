"""A subscription: what it queues, what it drops on arrival, and how a resync clears it."""

from __future__ import annotations

import asyncio

from chat.broker import RESYNC, Delivery, Item, Subscription

TICK = 0.05


def delivery(name: str) -> Delivery:
    return Delivery("site", name.encode())


def unwanted(delivery: Delivery) -> bool:
    return delivery.payload.startswith(b"unwanted")


def payloads(items: list[Item]) -> list[str]:
    return [item.payload.decode() if isinstance(item, Delivery) else "RESYNC"
            for item in items]


async def woken(sub: Subscription, timeout: float = 5.0) -> list[Item]:
    """What a consumer takes when it wakes: the first item and all that is ready with it."""
    async with asyncio.timeout(timeout):
        return [await sub.get(), *sub.ready()]


async def test_every_delivery_is_queued_in_order() -> None:
    sub = Subscription()
    sub.offer(delivery("row-1:1"))
    sub.offer(delivery("row-1:2"))
    assert payloads(await woken(sub, timeout=1)) == ["row-1:1", "row-1:2"]


async def test_what_the_consumer_has_no_use_for_is_dropped_on_arrival() -> None:
    sub = Subscription(unwanted=unwanted)
    sub.offer(delivery("unwanted change"))
    assert sub.pending() == 0  # not queued, and nothing woke
    sub.offer(delivery("reload"))
    assert payloads(await woken(sub)) == ["reload"]


async def test_a_resync_supersedes_what_was_queued() -> None:
    sub = Subscription()
    sub.offer(delivery("change"))
    sub.offer(RESYNC)
    assert payloads(await woken(sub)) == ["RESYNC"]


async def test_a_wait_within_a_time_ends_with_none_when_nothing_came() -> None:
    sub = Subscription()
    assert await sub.get_within(TICK) is None
    sub.offer(delivery("after"))
    item = await sub.get_within(TICK)
    assert isinstance(item, Delivery) and item.payload == b"after"


async def test_a_delivery_ends_a_wait_within_a_time_at_once_and_cancels_its_timer() -> None:
    sub = Subscription()
    loop = asyncio.get_running_loop()
    loop.call_later(TICK / 5, sub.offer, delivery("news"))
    async with asyncio.timeout(5):
        item = await sub.get_within(60)
    assert isinstance(item, Delivery) and item.payload == b"news"
    assert await sub.get_within(TICK) is None  # the first wait's timer is gone with it
