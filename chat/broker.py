"""Fan-out of events between processes: the doorbell, never the log.

A :class:`Subscription` is one local consumer's bounded inbox, subscribed to a set of
topics. A broker delivers every payload published to a topic to the subscriptions of that
topic in every process: :class:`MemoryBroker` within one process, :class:`RedisBroker`
across processes through Redis pub/sub.

A broker may lose a payload (Redis restarts, a process dies between commit and publish),
so consumers treat a delivery as a hint and read the truth from PostgreSQL. When a broker
knows it may have lost payloads (its Redis connection dropped), it tells every
subscription to resync once it is subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat import metrics
from chat.db import redact

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256
UNSENT_LIMIT = 10_000
# A connection that lasted this long was healthy: after it drops, retry from the shortest pause.
STABLE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """A payload published to a topic."""

    topic: str
    payload: bytes


class _Resync:
    """The broker may have lost deliveries: re-read everything from the database."""

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC: Final = _Resync()
Item = Delivery | _Resync  # what a subscription hands its consumer


# Whether a consumer has no use for a delivery: such a one is dropped on arrival.
Unwanted = Callable[[Delivery], bool]


class Overflow(Exception):
    """The subscription's queue filled up: its consumer fell behind and must resume later."""


class Subscription:
    """One consumer's bounded inbox of deliveries from a set of topics.

    Brokers never block on a slow consumer: when the queue is full the subscription is
    marked overflowed and :meth:`get` raises :class:`Overflow`, so the consumer can
    disconnect and later resume from its own cursor. What ``unwanted`` says the consumer
    has no use for (a dashboard hears every change of its sites, and shows a few) is
    dropped on arrival, never queued and never waking it.
    """

    # Slots, not a __dict__: every open stream holds one (about 200 bytes each less).
    __slots__ = ("_items", "_maxsize", "_on_overflow", "_timed_out", "_unwanted", "_waiter",
                 "overflowed", "topics")

    def __init__(
        self, maxsize: int = DEFAULT_QUEUE_SIZE, on_overflow: Callable[[], None] | None = None,
        unwanted: Unwanted | None = None,
    ) -> None:
        self.topics: set[str] = set()
        self.overflowed = False
        self._on_overflow = on_overflow
        self._maxsize = maxsize
        # A deque and one waiter, not an asyncio.Queue: that is six objects (three deques,
        # an Event and its deque), every open stream holds one, and each full garbage
        # collection walks them all.
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._unwanted = unwanted
        self._timed_out = False  # the timeout of get_within() passed

    def offer(self, item: Item) -> None:
        """Queue an item without waiting; called by brokers."""
        if self.overflowed:
            return
        if item is RESYNC:
            # A resync supersedes whatever is queued: the consumer will re-read it all.
            self._items.clear()
        elif (self._unwanted is not None and isinstance(item, Delivery)
              and self._unwanted(item)):
            return
        elif 0 < self._maxsize <= len(self._items):  # as asyncio.Queue: 0 is unbounded
            self.overflowed = True
            self._items.clear()  # the consumer resumes from its cursor, not from these
            self._wake()  # a waiting get() raises
            if self._on_overflow is not None:
                self._on_overflow()
            return
        self._items.append(item)
        self._wake()

    async def get(self) -> Item:
        """The next delivery or :data:`RESYNC`; raise :class:`Overflow` once it overflowed."""
        item = await self.get_within(None)
        assert item is not None  # no timeout, so only an item ends the wait
        return item

    async def get_within(self, seconds: float | None) -> Item | None:
        """As :meth:`get`, or None once ``seconds`` passed with nothing to take (None:
        wait as long as it takes).

        The timer wakes the wait as a delivery would, instead of cancelling it as
        ``asyncio.timeout`` does: an idle stream waits out a heartbeat at every wake-up,
        and a cancellation made two exceptions and their tracebacks each time, and a
        Timeout and a bound method that lived as long as the wait (objects the collector
        walks, see chat.memory)."""
        loop = asyncio.get_running_loop()
        timer = None if seconds is None else loop.call_later(seconds, _time_up, self)
        self._timed_out = False
        try:
            while True:
                if self.overflowed:
                    raise Overflow
                if self._items:
                    return self._items.popleft()
                if self._timed_out:
                    return None
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            if timer is not None:
                timer.cancel()

    def ready(self) -> list[Item]:
        """Everything queued now, without waiting: a consumer that was woken takes it all
        in one go."""
        items = list(self._items)
        self._items.clear()
        return items

    def pending(self) -> int:
        return len(self._items)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _time_up(sub: Subscription) -> None:
    # A function, not a bound method kept on the subscription: that would be a cycle.
    sub._timed_out = True
    sub._wake()


class Broker(Protocol):
    """What the app needs from a broker; see :class:`MemoryBroker` and :class:`RedisBroker`."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, payload: bytes) -> None: ...

    async def subscribe(self, sub: Subscription, topics: Iterable[str]) -> None: ...

    async def unsubscribe(self, sub: Subscription, topics: Iterable[str] | None = None) -> None:
        ...

    async def ping(self) -> bool: ...

    def subscription_count(self) -> int: ...

    def listen(self, hear: Callable[[str, bytes], None]) -> None: ...

    def has_subscribers(self, topic: str) -> bool: ...

    def ring_locally(self, topic: str, payload: bytes) -> None: ...


class _LocalFanout:
    """The in-process half every broker shares: which local subscriptions want which topic."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}
        self._hear: Callable[[str, bytes], None] | None = None

    def _add(self, sub: Subscription, topics: Iterable[str]) -> list[str]:
        """Register ``sub``; return the topics that had no local subscriber before."""
        first = []
        for topic in topics:
            if topic in sub.topics:
                continue
            sub.topics.add(topic)
            subscribers = self._subscribers.setdefault(topic, set())
            if not subscribers:
                first.append(topic)
            subscribers.add(sub)
        return first

    def _remove(self, sub: Subscription, topics: Iterable[str] | None) -> list[str]:
        """Unregister ``sub``; return the topics that have no local subscriber left."""
        last = []
        for topic in list(sub.topics if topics is None else topics):
            if topic not in sub.topics:
                continue
            sub.topics.discard(topic)
            subscribers = self._subscribers.get(topic)
            if subscribers is None:
                continue
            subscribers.discard(sub)
            if not subscribers:
                del self._subscribers[topic]
                last.append(topic)
        return last

    def _dispatch(self, topic: str, payload: bytes) -> None:
        if self._hear is not None:
            self._hear(topic, payload)
        self.ring_locally(topic, payload)

    def listen(self, hear: Callable[[str, bytes], None]) -> None:
        """Have ``hear`` called once with every payload that reaches this process, before
        its subscriptions get it (the repair check keeps track of what arrived)."""
        self._hear = hear

    def has_subscribers(self, topic: str) -> bool:
        return topic in self._subscribers

    def ring_locally(self, topic: str, payload: bytes) -> None:
        """Deliver ``payload`` to this process's subscriptions of ``topic`` only, as if
        published (the repair check rings for publishes that never arrived)."""
        delivery = Delivery(topic, payload)
        for sub in tuple(self._subscribers.get(topic, ())):
            sub.offer(delivery)

    def _subscriptions(self) -> set[Subscription]:
        return {sub for subscribers in self._subscribers.values() for sub in subscribers}

    def _resync_all(self) -> None:
        for sub in self._subscriptions():
            sub.offer(RESYNC)

    def subscription_count(self) -> int:
        """How many local subscriptions exist (for metrics and leak tests)."""
        return len(self._subscriptions())


@contextlib.asynccontextmanager
async def subscribed(
    broker: Broker,
    topics: Iterable[str],
    maxsize: int = DEFAULT_QUEUE_SIZE,
    on_overflow: Callable[[], None] | None = None,
    unwanted: Unwanted | None = None,
) -> AsyncIterator[Subscription]:
    """A subscription to ``topics`` (see :class:`Subscription`) that is removed from the
    broker however the block ends."""
    sub = Subscription(maxsize, on_overflow, unwanted)
    try:
        await broker.subscribe(sub, topics)
        yield sub
    finally:
        await broker.unsubscribe(sub)


class MemoryBroker(_LocalFanout):
    """Delivers within this process only: the default when ``REDIS_URL`` is unset."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._resync_all()
        self._subscribers.clear()

    async def publish(self, topic: str, payload: bytes) -> None:
        self._dispatch(topic, payload)

    async def subscribe(self, sub: Subscription, topics: Iterable[str]) -> None:
        self._add(sub, topics)

    async def unsubscribe(self, sub: Subscription, topics: Iterable[str] | None = None) -> None:
        self._remove(sub, topics)

    async def ping(self) -> bool:
        return True


class RedisBroker(_LocalFanout):
    """Delivers across processes through Redis pub/sub.

    Each process holds one pub/sub connection, owned by a supervised reader task, and
    subscribes a Redis channel only while a local subscription wants it (a channel left
    with no subscriber is dropped after ``linger`` seconds, so reconnecting clients do not
    churn it). Publishing uses a separate connection pool.

    :meth:`subscribe` returns once Redis has confirmed the channels, so a consumer that
    subscribes and then reads the database cannot miss a payload published in between.
    When the connection drops, the reader reconnects with capped, jittered backoff,
    resubscribes every wanted channel, and only then tells every subscription to resync.
    """

    PING_INTERVAL = 10.0
    CONFIRM_TIMEOUT = 5.0

    def __init__(
        self, url: str, *, prefix: str = "chat:", linger: float = 5.0, max_backoff: float = 5.0
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.linger = linger
        self.max_backoff = max_backoff
        self.connects = 0  # how many times the listener connected
        # The listener must see every failure (to resync), so redis-py must not retry for it;
        # a publish may be retried once, on a fresh connection after Redis restarted.
        self._publisher = aioredis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 1)
        )
        self._listener = aioredis.Redis.from_url(
            url, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0)
        )
        # Publishes that could not be sent, re-sent after reconnecting: subscribers in other
        # processes may have resynced before these changes committed.
        self._unsent: deque[tuple[str, bytes]] = deque(maxlen=UNSENT_LIMIT)
        self._conn: Any = None  # the redis.asyncio Connection that reads pub/sub replies
        self._channels: set[str] = set()  # confirmed on the current connection
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._idle_since: dict[str, float] = {}
        self._connected = asyncio.Event()
        self._down_since: float | None = None  # loop time of an outage's first failure
        self._publish_failure = ""  # why a publish failed while the reader was connected
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the reader and wait briefly for it to connect; it keeps retrying regardless."""
        self._reader = asyncio.create_task(self._run(), name="redis-broker-reader")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.CONFIRM_TIMEOUT):
                await self._connected.wait()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._resync_all()
        self._subscribers.clear()
        await self._publisher.aclose()
        await self._listener.aclose()

    async def publish(self, topic: str, payload: bytes) -> None:
        if not self._connected.is_set():
            # Waiting for a connect timeout would only slow the sender down: keep it for
            # when Redis is back.
            self._unsent.append((topic, payload))
            return
        try:
            await self._publisher.publish(self.prefix + topic, payload)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._unsent.append((topic, payload))
            if self._connected.is_set():
                # Redis fails although the reader has not noticed yet (a hung server, a
                # silent network): queue the next publishes at once instead of each waiting
                # for a timeout, and have the reader reconnect.
                self._connected.clear()
                self._publish_failure = _cause(exc)
        except RedisError as exc:
            logger.warning("Could not publish to %s (%s); re-sending after reconnect", topic, exc)
            self._unsent.append((topic, payload))

    async def _flush_unsent(self) -> None:
        while self._unsent and self._connected.is_set():
            topic, payload = self._unsent.popleft()
            try:
                await self._publisher.publish(self.prefix + topic, payload)
            except (RedisError, OSError):
                self._unsent.appendleft((topic, payload))
                return

    async def subscribe(self, sub: Subscription, topics: Iterable[str]) -> None:
        topics = list(topics)
        self._add(sub, topics)
        for topic in topics:
            self._idle_since.pop(topic, None)
        pending = self._request([t for t in topics if t not in self._channels])
        if not pending:
            return
        try:
            async with asyncio.timeout(self.CONFIRM_TIMEOUT):
                await asyncio.gather(*(asyncio.shield(f) for f in pending))
        except (TimeoutError, ConnectionError):
            # The connection is failing: the reader reconnects, resubscribes and resyncs.
            logger.warning("Redis did not confirm a subscription; resyncing on reconnect")

    async def unsubscribe(self, sub: Subscription, topics: Iterable[str] | None = None) -> None:
        now = asyncio.get_running_loop().time()
        for topic in self._remove(sub, topics):
            self._idle_since[topic] = now

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                return bool(await self._publisher.ping()) and self._connected.is_set()
        except (RedisError, OSError, TimeoutError):
            return False

    def channel_count(self) -> int:
        """How many Redis channels this process is subscribed to (for leak tests)."""
        return len(self._channels)

    def _request(self, topics: list[str]) -> list[asyncio.Future[None]]:
        """SUBSCRIBE the topics not yet asked for; the futures resolve on confirmation."""
        if self._conn is None:
            return []  # not connected: the reconnect subscribes them, then resyncs
        loop = asyncio.get_running_loop()
        new = [t for t in topics if t not in self._confirmations]
        for topic in new:
            self._confirmations[topic] = loop.create_future()
        if new:
            _spawn(self._send("SUBSCRIBE", new))
        return [self._confirmations[t] for t in topics]

    async def _send(self, command: str, topics: list[str]) -> None:
        # Checked right before sending: redis-py would silently reconnect a dropped
        # connection, which must be the reader's job (it resubscribes and resyncs).
        if self._conn is not None and self._conn.is_connected:
            await self._conn.send_command(command, *(self.prefix + t for t in topics))

    async def _run(self) -> None:
        """Hold the pub/sub connection: connect, read until it fails, back off, repeat.

        Every failure is followed by a capped, jittered pause, whatever its kind: a refused
        connection fails in microseconds, and retrying at once would spin a core.
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.max_backoff)
        while True:
            connected_at = None
            try:
                await self._connect()
                connected_at = loop.time()
                self._outage_ended()
                await self._read()
            except asyncio.CancelledError:
                await self._disconnect()
                raise
            except (RedisError, OSError) as exc:
                self._outage_began(exc)
            except Exception as exc:
                # The reader must outlive any surprise, or this process goes deaf.
                logger.exception("The Redis reader failed unexpectedly; reconnecting")
                self._outage_began(exc)
            await self._disconnect()
            if connected_at is not None and loop.time() - connected_at > STABLE_SECONDS:
                backoff.reset()  # a connection that held for a while: retry quickly
            await asyncio.sleep(backoff.next())

    def _outage_began(self, exc: BaseException) -> None:
        """Log the first failure of an outage; the retries that follow only at debug level."""
        if self._down_since is not None:
            logger.debug("Redis still unreachable at %s (%s)", redact(self.url), _cause(exc))
            return
        self._down_since = asyncio.get_running_loop().time()
        logger.warning(
            "Redis unreachable at %s (%s); retrying with backoff up to %g s; live delivery "
            "paused, messages are still stored", redact(self.url), _cause(exc), self.max_backoff,
        )

    def _outage_ended(self) -> None:
        if self._down_since is None:
            return
        down_for = asyncio.get_running_loop().time() - self._down_since
        self._down_since = None
        logger.warning("Redis reachable again after %.1f s; resyncing %d streams",
                       down_for, len(self._subscriptions()))

    async def _connect(self) -> None:
        # A plain connection, not redis-py's PubSub, which reconnects and resubscribes on
        # its own: here every drop must reach the reader, so that streams resync.
        pool: Any = self._listener.connection_pool
        conn: Any = pool.make_connection()
        async with asyncio.timeout(self.CONFIRM_TIMEOUT):
            await conn.connect()
        self._conn = conn
        self._connected.set()
        wanted = list(self._subscribers)
        self.connects += 1
        if self.connects > 1:
            metrics.BROKER_RECONNECTS.inc()
        # The subscriptions that existed while disconnected may have missed payloads. Tell
        # them to resync once every channel is confirmed, so the re-read cannot miss
        # anything; if the connection fails first, the next connect resyncs instead.
        stale = self._subscriptions()
        confirmed = asyncio.gather(*self._request(wanted))
        confirmed.add_done_callback(lambda done: self._resync_when_confirmed(done, stale))
        if self._unsent:
            _spawn(self._flush_unsent())

    def _resync_when_confirmed(
        self, confirmed: asyncio.Future[list[None]], stale: set[Subscription]
    ) -> None:
        if confirmed.cancelled() or confirmed.exception() is not None:
            return
        for sub in stale & self._subscriptions():
            sub.offer(RESYNC)

    async def _disconnect(self) -> None:
        self._connected.clear()
        conn, self._conn = self._conn, None
        self._channels.clear()
        for future in self._confirmations.values():
            if not future.done():
                future.set_exception(ConnectionError("Redis connection lost"))
                future.exception()  # retrieved here: whoever waited resyncs on reconnect
        self._confirmations.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        last_heard = last_ping = next_sweep = loop.time()
        while True:
            # Wake at least every second, to drop idle channels on time.
            asked = loop.time()
            reply = await self._conn.read_response(timeout=1.0, push_request=True)
            now = loop.time()
            if not self._connected.is_set():
                raise ConnectionError(f"a publish failed: {self._publish_failure}")
            if reply is None and now - asked < 0.5:
                # "Nothing" long before the timeout: the connection is broken, and reading
                # again at once would spin and starve every other task of this process.
                raise ConnectionError("Redis returned nothing before the read timed out")
            if reply is not None:
                last_heard = now
                self._handle(reply)
            elif now - last_heard > 3 * self.PING_INTERVAL:
                raise ConnectionError("Redis stopped answering pings")
            elif now - max(last_heard, last_ping) > self.PING_INTERVAL:
                last_ping = now
                await self._conn.send_command("PING")
            if now >= next_sweep:
                next_sweep = now + 1.0
                await self._drop_idle_channels(now)

    def _handle(self, reply: Any) -> None:
        """A pub/sub push ([b"message", channel, data], [b"subscribe", channel, count],
        [b"unsubscribe", ...]) or a pong. redis-py speaks RESP3, where these are pushes."""
        if not isinstance(reply, list) or len(reply) != 3:
            return
        kind, channel, data = reply
        if kind == b"message":
            self._dispatch(channel.decode()[len(self.prefix):], data)
        elif kind == b"subscribe":
            topic = channel.decode()[len(self.prefix):]
            self._channels.add(topic)
            future = self._confirmations.pop(topic, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def _drop_idle_channels(self, now: float) -> None:
        drop = []
        for topic, since in list(self._idle_since.items()):
            if topic in self._confirmations:
                continue  # drop only confirmed channels, never one awaiting its confirmation
            if topic in self._subscribers or topic not in self._channels:
                del self._idle_since[topic]
            elif now - since >= self.linger:
                del self._idle_since[topic]
                drop.append(topic)
        if drop:
            self._channels.difference_update(drop)
            await self._send("UNSUBSCRIBE", drop)


class Backoff:
    """Pauses between reconnection attempts: doubling from ``first`` up to ``cap``, each
    scaled by a random factor in [0.5, 1], so processes that lost Redis together do not
    come back in lockstep."""

    def __init__(self, cap: float, first: float = 0.1) -> None:
        self.cap = cap
        self.first = first
        self._next = first

    def next(self) -> float:
        pause = min(self._next, self.cap) * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self.cap)
        return pause

    def reset(self) -> None:
        self._next = self.first


def _cause(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run a fire-and-forget command; its failure surfaces in the reader, so only log it."""
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[None]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.debug("Redis command failed: %s", task.exception())


def create_broker(redis_url: str | None, namespace: str) -> Broker:
    """A :class:`RedisBroker` when ``REDIS_URL`` is set, else a :class:`MemoryBroker`.

    Every Redis channel starts with ``namespace``, so installations sharing one Redis
    never hear each other.
    """
    return RedisBroker(redis_url, prefix=namespace + ":") if redis_url else MemoryBroker()
