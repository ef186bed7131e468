"""One contract, two brokers: the in-process MemoryBroker and the RedisBroker on a real Redis."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from chat.broker import RESYNC, Broker, Delivery, MemoryBroker, Overflow, RedisBroker, subscribed
from tests.support import ClosingListener, RedisProcess


def redis_broker(url: str, prefix: str | None = None, **options: float) -> RedisBroker:
    # A prefix per test keeps tests that share one Redis from hearing each other.
    return RedisBroker(url, prefix=prefix or f"test-{uuid.uuid4().hex[:8]}:", **options)


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    instance: Broker
    if request.param == "memory":
        instance = MemoryBroker()
    else:
        instance = redis_broker(request.getfixturevalue("redis_url"))
    await instance.start()
    yield instance
    await instance.close()


async def next_item(sub: object, timeout: float = 5.0) -> object:
    async with asyncio.timeout(timeout):
        return await sub.get()  # type: ignore[attr-defined]


async def test_delivers_only_to_subscribers_of_the_topic(broker: Broker) -> None:
    async with subscribed(broker, ["conv:1"]) as one, subscribed(broker, ["conv:2"]) as two:
        await broker.publish("conv:1", b"hello")
        assert await next_item(one) == Delivery("conv:1", b"hello")
        await broker.publish("conv:2", b"second")
        assert await next_item(two) == Delivery("conv:2", b"second")
        assert one.pending() == 0


async def test_every_subscription_of_a_topic_receives_each_payload_in_order(
    broker: Broker,
) -> None:
    async with subscribed(broker, ["site:1"]) as a, subscribed(broker, ["site:1", "x"]) as b:
        for n in range(20):
            await broker.publish("site:1", str(n).encode())
        for sub in (a, b):
            got = [await next_item(sub) for _ in range(20)]
            assert [d.payload for d in got] == [str(n).encode() for n in range(20)]  # type: ignore[attr-defined]


async def test_unsubscribed_topics_are_no_longer_delivered(broker: Broker) -> None:
    async with subscribed(broker, ["a", "b"]) as sub:
        await broker.unsubscribe(sub, ["a"])
        await broker.publish("a", b"dropped")
        await broker.publish("b", b"kept")
        assert await next_item(sub) == Delivery("b", b"kept")
        assert sub.pending() == 0


async def test_a_consumer_that_falls_behind_overflows_without_blocking_the_publisher(
    broker: Broker,
) -> None:
    async with subscribed(broker, ["busy"], maxsize=4) as slow, subscribed(broker, ["busy"]) as ok:
        async with asyncio.timeout(5):
            for n in range(10):
                await broker.publish("busy", str(n).encode())
        for _ in range(10):
            await next_item(ok)
        assert slow.overflowed
        with pytest.raises(Overflow):
            await next_item(slow)


async def test_a_closed_subscription_leaves_nothing_behind(broker: Broker) -> None:
    before = broker.subscription_count()
    async with subscribed(broker, ["t1", "t2"]):
        assert broker.subscription_count() == before + 1
    assert broker.subscription_count() == before


async def test_redis_carries_payloads_between_brokers_from_the_moment_subscribe_returns(
    redis_url: str,
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    sender, receiver = redis_broker(redis_url, prefix), redis_broker(redis_url, prefix)
    await sender.start()
    await receiver.start()
    try:
        for n in range(20):  # each round subscribes a fresh topic, then publishes at once
            async with subscribed(receiver, [f"conv:{n}"]) as sub:
                await sender.publish(f"conv:{n}", b"x")
                assert await next_item(sub) == Delivery(f"conv:{n}", b"x")
    finally:
        await sender.close()
        await receiver.close()


async def test_redis_channels_are_dropped_after_their_last_subscriber_leaves(
    redis_url: str,
) -> None:
    broker = redis_broker(redis_url, linger=0.2)
    await broker.start()
    try:
        async with subscribed(broker, ["a", "b"]):
            assert broker.channel_count() == 2
        async with asyncio.timeout(5):
            while broker.channel_count():
                await asyncio.sleep(0.05)
        async with subscribed(broker, ["a"]) as sub:  # and can be subscribed again
            await broker.publish("a", b"again")
            assert await next_item(sub) == Delivery("a", b"again")
    finally:
        await broker.close()


async def test_redis_restart_is_survived_and_every_subscription_told_to_resync(
    redis_process: RedisProcess,
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    receiver = redis_broker(redis_process.url, prefix, max_backoff=0.5)
    sender = redis_broker(redis_process.url, prefix, max_backoff=0.5)
    await receiver.start()
    await sender.start()
    try:
        async with subscribed(receiver, ["conv:1"]) as sub:
            redis_process.kill()
            await sender.publish("conv:1", b"kept while down")  # returns at once, no error
            assert await receiver.ping() is False
            redis_process.start()
            assert await next_item(sub, timeout=15) is RESYNC
            async with asyncio.timeout(15):
                while not await sender.ping():
                    await asyncio.sleep(0.1)
            await sender.publish("conv:1", b"after restart")
            payloads = []
            while b"after restart" not in payloads:
                item = await next_item(sub)
                assert isinstance(item, Delivery)
                payloads.append(item.payload)
            # The publish made while Redis was down is re-sent once the sender reconnects;
            # whether it beats the receiver's resubscription is a race the resync covers.
            assert set(payloads) <= {b"kept while down", b"after restart"}
            assert receiver.connects >= 2
    finally:
        await receiver.close()
        await sender.close()


def broker_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "chat.broker" and r.levelno >= logging.WARNING and text in r.message]


async def test_a_redis_that_drops_every_connection_is_retried_with_backoff_not_in_a_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every attempt is accepted and closed at once, so each fails within microseconds: a
    # reader that retries without pausing makes thousands of attempts a second.
    async with ClosingListener() as redis:
        broker = redis_broker(f"redis://127.0.0.1:{redis.port}/0", max_backoff=1.0)
        started = time.monotonic()
        await broker.start()  # waits CONFIRM_TIMEOUT (5 s) for a connection, then returns
        rate = redis.accepted / (time.monotonic() - started)
        await broker.close()
    # Pauses double from 0.05-0.1 s to 0.5-1 s (the cap): at most 13 attempts in 5 s.
    assert rate <= 5, f"{rate:.0f} connection attempts a second while Redis is down"
    assert len(broker_warnings(caplog, "Redis unreachable at")) == 1


async def test_an_outage_is_logged_once_costs_no_cpu_and_its_end_resyncs_every_stream(
    redis_process: RedisProcess, caplog: pytest.LogCaptureFixture,
) -> None:
    broker = redis_broker(redis_process.url, max_backoff=1.0)
    await broker.start()
    try:
        async with subscribed(broker, ["conv:1"]) as one, subscribed(broker, ["conv:2"]) as two:
            redis_process.kill()  # refused from now on: the fastest way to fail
            cpu_before, wall_before = time.process_time(), time.monotonic()
            await asyncio.sleep(3.0)  # the outage over which CPU time is measured
            cpu = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
            assert cpu < 0.2, f"the reader used {cpu:.0%} of a core while Redis was down"
            assert len(broker_warnings(caplog, "Redis unreachable at")) == 1
            redis_process.start()
            assert await next_item(one, timeout=15) is RESYNC
            assert await next_item(two, timeout=15) is RESYNC
        ended = broker_warnings(caplog, "Redis reachable again after")
        assert len(ended) == 1 and ended[0].endswith("resyncing 2 streams"), ended
        assert len(broker_warnings(caplog, "Redis unreachable at")) == 1
    finally:
        await broker.close()


async def test_publishes_to_a_hung_redis_stop_waiting_after_the_first_and_arrive_later(
    redis_process: RedisProcess,
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    sender, receiver = redis_broker(redis_process.url, prefix), redis_broker(redis_process.url,
                                                                             prefix)
    await sender.start()
    await receiver.start()
    try:
        async with subscribed(receiver, ["conv:1"]) as sub:
            redis_process.freeze()  # connections stay open; nothing answers
            await sender.publish("conv:1", b"0")  # waits for the socket timeout, then queues
            async with asyncio.timeout(1.0):  # well below one socket timeout (2 s)
                for n in range(1, 10):
                    await sender.publish("conv:1", str(n).encode())
            redis_process.thaw()
            payloads = set()
            while len(payloads) < 10:
                item = await next_item(sub, timeout=20)
                if isinstance(item, Delivery):
                    payloads.add(item.payload)
            assert payloads == {str(n).encode() for n in range(10)}
    finally:
        await sender.close()
        await receiver.close()
