"""The stream core on a real PostgreSQL, with a broker that delivers in an order the test picks.

Two publishes can overtake each other on their way through the broker (design 5.4); here
the test makes them, deterministically, to prove what the stream does about it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from starlette.types import Message

from chat import db, events, frames, metrics, signals
from chat.actions import conversations as actions
from chat.broker import MemoryBroker
from chat.config import Settings
from chat.models import Agent
from chat.ratelimit import RateLimiter
from chat.repair import Repairer
from chat.rows import RowFeed
from chat.services import Services
from chat.signals import Signal
from chat.stream import IDLE, Stream, StreamLimits
from chat.web.dashboard import AgentView
from chat.web.sse import Watchdog
from chat.web.streaming import StreamResponse
from chat.web.widget import VisitorView
from tests.conftest import Seed


class HeldBroker(MemoryBroker):
    """Keeps every publish until the test releases it, in whatever order it likes."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes) -> None:
        self.held.append((topic, payload))

    def release(self, topic: str, *indexes: int) -> None:
        on_topic = [payload for t, payload in self.held if t == topic]
        for index in indexes:
            self._dispatch(topic, on_topic[index])


@pytest.fixture
async def svc(pool: db.Pool, tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "SECRET_KEY": "k" * 40})
    frames.cache.clear()  # ids restart with every test's fresh tables; in production they never do
    yield Services(settings, pool, HeldBroker(), RateLimiter(None, enabled=False))


def dashboard(svc: Services, seed: Seed, *watched: int) -> AsyncIterator[bytes]:
    """A dashboard's stream: the open inbox, and the conversations ``watched``."""
    view = AgentView([seed.site_id], seed.agent_id, "session:test", watched, inbox="open")
    return Stream(svc, view).frames()


def rows_every(svc: Services, tick: float) -> HeldBroker:
    """The test's broker, with the process's inbox rows (chat.rows) batched every ``tick``."""
    assert isinstance(svc.broker, HeldBroker)
    svc.rows = RowFeed(svc.broker, tick=tick)
    return svc.broker


async def next_frame(stream: AsyncIterator[bytes], timeout: float = 5) -> bytes:
    async with asyncio.timeout(timeout):
        return await anext(stream)


def ids(batch: bytes) -> list[str]:
    """The SSE ids in a batch of events (a stream writes each wake-up's events at once)."""
    return [line[4:] for line in batch.decode().splitlines() if line.startswith("id: ")]


async def test_an_entry_that_overtakes_an_earlier_one_is_preceded_by_it_from_the_database(
    svc: Services, seed: Seed,
) -> None:
    broker = svc.broker
    assert isinstance(broker, HeldBroker)
    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None, body="one")
    conversation = started.conversation.id
    topic = f"conv:{conversation}"
    stream = Stream(svc, VisitorView((conversation,))).frames()
    assert b"event: hello" in await next_frame(stream)
    assert b'data-status="waiting"' in await next_frame(stream)  # state, then live from seq 1

    await actions.send(svc, conversation, body="two")
    await actions.send(svc, conversation, body="three")
    gaps_before = metrics.GAP_FILLS.labels("visitor")._value.get()
    broker.release(topic, 2)  # "three" (seq 3) arrives first...
    batch = await next_frame(stream)  # its state, then 2 from the database, then 3
    assert ids(batch) == [f"{conversation}-2", f"{conversation}-3"]
    assert batch.index(b"two") < batch.index(b"three")
    assert metrics.GAP_FILLS.labels("visitor")._value.get() == gaps_before + 1

    broker.release(topic, 1)  # ...and "two" arrives late: nothing is sent twice
    with pytest.raises(TimeoutError):
        await next_frame(stream, timeout=1)


async def test_a_quiet_stream_yields_idle_each_heartbeat_and_still_delivers_after(
    svc: Services, seed: Seed,
) -> None:
    """The response writes a heartbeat for each IDLE; the stream's own wait times it."""
    broker = svc.broker
    assert isinstance(broker, HeldBroker)
    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None, body="one")
    conversation = started.conversation.id
    stream = Stream(svc, VisitorView((conversation,)), limits=StreamLimits(heartbeat=0.2),
                    ends_at=time.time() + 60).frames()
    assert b"event: hello" in await next_frame(stream)
    await next_frame(stream)  # status
    assert [await next_frame(stream, timeout=2) for _ in range(2)] == [IDLE, IDLE]
    await actions.send(svc, conversation, body="after a silence")
    broker.release(f"conv:{conversation}", 1)  # 0 is the start's
    while (batch := await next_frame(stream)) == IDLE:  # as many as the send took
        pass
    assert ids(batch) == [f"{conversation}-2"]
    await stream.aclose()


async def test_a_change_is_rendered_once_per_audience_however_many_streams_send_it(
    svc: Services, seed: Seed,
) -> None:
    broker = svc.broker
    assert isinstance(broker, HeldBroker)
    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None, body="one")
    conversation = started.conversation.id
    streams = [Stream(svc, VisitorView((conversation,))).frames() for _ in range(5)]
    for stream in streams:
        await next_frame(stream)  # hello
        await next_frame(stream)  # status
    await actions.send(svc, conversation, body="to everyone")
    renders_before = frames.cache.renders
    broker.release(f"conv:{conversation}", 1)
    batches = [await next_frame(s) for s in streams]
    # One entry; the status it left as it was is the frame already rendered and shown.
    assert frames.cache.renders == renders_before + 1
    assert len(set(batches)) == 1
    assert ids(batches[0]) == [f"{conversation}-2"]
    for stream in streams:
        await stream.aclose()
    assert broker.subscription_count() == 0


async def test_an_entry_whose_publish_was_lost_still_arrives_from_the_database(
    svc: Services, seed: Seed,
) -> None:
    """A process that dies between commit and publish rings no doorbell: the process's
    repair check finds the database ahead and rings for it."""
    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None, body="one")
    conversation = started.conversation.id
    repairer = Repairer(svc.broker, svc.pool)
    stream = Stream(svc, VisitorView((conversation,))).frames()
    await next_frame(stream)  # hello
    await next_frame(stream)  # status
    await actions.send(svc, conversation, body="published into the void")  # never released
    repairs = metrics.REPAIRS._value.get()
    assert await repairer.check() == 1
    batch = await next_frame(stream)
    assert ids(batch) == [f"{conversation}-2"] and b"published into the void" in batch
    assert metrics.REPAIRS._value.get() == repairs + 1
    assert await repairer.check() == 0  # rung once: the process has heard it now
    await stream.aclose()


async def test_the_repair_check_rings_for_nothing_the_process_heard(
    svc: Services, seed: Seed,
) -> None:
    broker = svc.broker
    assert isinstance(broker, HeldBroker)
    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None, body="one")
    conversation = started.conversation.id
    repairer = Repairer(broker, svc.pool)
    assert await repairer.check() == 0  # nobody watches: not even a query's worth of work
    stream = Stream(svc, VisitorView((conversation,))).frames()
    await next_frame(stream)  # hello
    await next_frame(stream)  # status
    await actions.send(svc, conversation, body="heard")
    broker.release(f"conv:{conversation}", 1)
    assert b"heard" in await next_frame(stream)
    assert await repairer.check() == 0
    with pytest.raises(TimeoutError):
        await next_frame(stream, timeout=0.5)
    await stream.aclose()


async def test_inbox_rows_whose_publishes_were_lost_are_repaired_from_the_database(
    svc: Services, seed: Seed,
) -> None:
    """The repair check covers the whole inbox, not only an open conversation: a row that
    appeared, or was closed, without its doorbell shows up right all the same."""
    repairer = Repairer(svc.broker, svc.pool)
    stream = dashboard(svc, seed)
    await next_frame(stream)  # hello
    assert b"conversation-row" not in await next_frame(stream)  # an empty inbox

    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None,
                                  body="a doorbell nobody heard")  # never released
    assert await repairer.check() == 1
    assert b"a doorbell nobody heard" in await next_frame(stream)

    alex = Agent(seed.agent_id, "Alex", seed.email, "admin")
    await actions.close(svc, started.conversation.id, alex)  # never released either
    assert await repairer.check() == 1
    assert b'data-status="closed"' in await next_frame(stream)  # the page files it as closed

    assert await repairer.check() == 0  # once repaired, checks find nothing more to do
    await stream.aclose()


class Connection:
    """The server's side of one client connection, for a response called in-process."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.gone = asyncio.Event()
        self.stalled = False  # every write blocks, as on a client that stopped reading
        self.blocked = asyncio.Event()

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.stalled:
            self.blocked.set()
            await asyncio.Event().wait()
        self.sent.append(message)


async def test_a_stream_however_it_ends_leaves_no_cycle_for_the_collector(
    svc: Services, seed: Seed,
) -> None:
    """Everything an ended stream held is freed by reference counting alone, which is what
    lets the process freeze long-lived objects out of garbage collection (chat.memory)."""
    broker = svc.broker
    assert isinstance(broker, HeldBroker)
    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None, body="one")
    conversation, topic = started.conversation.id, f"conv:{started.conversation.id}"

    async def write_something() -> None:
        await actions.send(svc, conversation, body="news")
        broker.release(topic, -1)

    async def served(end: Callable[[StreamResponse, Connection, Watchdog], Awaitable[None]],
                     queue_size: int = 256) -> None:
        watchdog, client, released = Watchdog(), Connection(), []
        limits = StreamLimits(queue_size=queue_size, heartbeat=5)
        response = StreamResponse(Stream(svc, VisitorView((conversation,)), limits=limits),
                                  watchdog, on_close=lambda: released.append(True))
        serving = asyncio.create_task(response({"type": "http", "method": "GET"},
                                               client.receive, client.send))
        async with asyncio.timeout(5):
            while len(client.sent) < 3:  # the start, the hello, the status
                await asyncio.sleep(0.01)
            await end(response, client, watchdog)
            await serving
        assert released == [True]

    async def disconnect(_: StreamResponse, client: Connection, __: Watchdog) -> None:
        client.gone.set()

    async def stall(_: StreamResponse, client: Connection, watchdog: Watchdog) -> None:
        client.stalled = True
        await write_something()
        await client.blocked.wait()
        watchdog.check(time.monotonic() + 60)

    async def fall_behind(_: StreamResponse, client: Connection, __: Watchdog) -> None:
        client.stalled = True
        await write_something()
        await client.blocked.wait()
        broker.release(topic, 0, 0, 0)  # more than its queue holds

    async def shut_down(_: StreamResponse, __: Connection, watchdog: Watchdog) -> None:
        watchdog.shut_down()

    async def reload(*_: object) -> None:
        broker.ring_locally(topic, events.RELOAD)  # the frames run out

    gc.collect()
    gc.disable()  # nothing may be collected behind the test's back
    try:
        for end in (disconnect, stall, shut_down, reload):
            await served(end)
        await served(fall_behind, queue_size=2)
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds stays in gc.garbage
        gc.collect()
        ours = [o for o in gc.garbage if type(o).__module__.startswith("chat.")
                or getattr(o, "__qualname__", "").startswith(("SSEResponse", "Stream"))]
        assert not ours, ours[:10]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_a_change_read_by_a_streams_catch_up_is_not_rung_again(
    svc: Services, seed: Seed,
) -> None:
    """A process hears only the topics it subscribes to: a conversation that changed just
    before its first stream opened was read by that stream's catch-up, not missed."""
    started = await actions.start(svc, site_id=seed.site_id, visitor_id=None, body="one")
    conversation = started.conversation.id
    await actions.send(svc, conversation, body="before anyone listened")  # never released
    svc.repairer = Repairer(svc.broker, svc.pool)
    stream = Stream(svc, VisitorView((conversation,))).frames()
    await next_frame(stream)  # hello
    await next_frame(stream)  # status
    assert await svc.repairer.check() == 0
    await stream.aclose()


async def test_inbox_rows_of_other_conversations_are_coalesced_but_the_open_one_never_waits(
    svc: Services, seed: Seed,
) -> None:
    """A busy site costs a dashboard one write per tick, each changed row in its newest
    version once; the conversation the agent has open is history, sent as it happens."""
    broker = rows_every(svc, 2)
    site = f"site:{seed.site_id}"
    opened = (await actions.start(svc, site_id=seed.site_id, visitor_id=None,
                                  body="the open one")).conversation.id
    busy = (await actions.start(svc, site_id=seed.site_id, visitor_id=None,
                                body="busy 0")).conversation.id
    stream = dashboard(svc, seed, opened)
    await next_frame(stream)  # hello
    await next_frame(stream)  # the inbox and the open conversation's status
    broker.held.clear()

    for n in range(1, 6):
        await actions.send(svc, busy, body=f"busy {n}")
    broker.release(site, 4, 0, 1, 2, 3)  # the newest first: the older ones change nothing
    await actions.send(svc, opened, body="a reply")
    broker.release(site, 5)

    batch = (await next_frame(stream, timeout=1.5)).decode()  # at once, not after the tick
    assert "a reply" in batch and f'id: {opened}-2' in batch
    assert 'class="conversation-row' not in batch  # rows wait for the tick
    rows = (await next_frame(stream, timeout=3)).decode()
    assert rows.count(f'id="conversation-{busy}"') == 1  # five changes, one row
    assert "busy 5" in rows and "busy 4" not in rows
    assert rows.count(f'id="conversation-{opened}"') == 1
    await stream.aclose()


async def test_every_dashboard_gets_the_rows_and_marks_and_one_that_opens_sees_who_types(
    svc: Services, seed: Seed,
) -> None:
    """The process's rows (chat.rows) reach every dashboard in the same batch: a typing
    mark, the row a message renders afresh (showing nobody typing, so the visitor's next
    refresh marks it again), and for a dashboard that opens meanwhile, the mark at once."""
    broker = rows_every(svc, 0.05)
    site = f"site:{seed.site_id}"
    conversation = (await actions.start(svc, site_id=seed.site_id, visitor_id=None,
                                        body="hello")).conversation.id

    async def typing(refresh: bool = False) -> None:
        await signals.pass_on(broker, svc.presence, svc.relay, Signal(
            conversation, seed.site_id, "typing", "visitor", "Dana"), refresh=refresh)

    first, second = dashboard(svc, seed), dashboard(svc, seed)
    for stream in (first, second):
        await next_frame(stream)  # hello
        await next_frame(stream)  # the inbox
    broker.held.clear()
    await typing()
    broker.release(site, 0)
    marks = [await next_frame(stream) for stream in (first, second)]
    assert marks[0] == marks[1] and b"typing\xe2\x80\xa6" in marks[0]

    svc.relay = signals.Relay(every=0)  # let the refresh through to the process
    await typing(refresh=True)
    await actions.send(svc, conversation, body="the question")
    broker.release(site, 1, 2)  # the refresh, then the message: only the row comes
    rows = [await next_frame(stream) for stream in (first, second)]
    assert rows[0] == rows[1]
    assert b"the question" in rows[0] and b'hx-target="#row-typing-' not in rows[0]

    await typing(refresh=True)
    broker.release(site, 3)  # still typing after the message: the row is marked again
    assert b"typing\xe2\x80\xa6" in await next_frame(first)
    third = dashboard(svc, seed)
    await next_frame(third)  # hello
    assert b"typing\xe2\x80\xa6" in await next_frame(third)  # the inbox, marked
    for stream in (first, second, third):
        await stream.aclose()
    assert broker.subscription_count() == 0


async def test_a_dashboard_shows_a_typing_that_began_before_its_process_heard_any(
    svc: Services, seed: Seed,
) -> None:
    """Typing signalled while no dashboard of this process was open (only the presence
    store kept it) marks the row of the first one that opens."""
    broker = rows_every(svc, 0.05)
    conversation = (await actions.start(svc, site_id=seed.site_id, visitor_id=None,
                                        body="hello")).conversation.id
    await signals.pass_on(broker, svc.presence, svc.relay, Signal(
        conversation, seed.site_id, "typing", "visitor", "Dana"), refresh=False)  # never released
    stream = dashboard(svc, seed)
    await next_frame(stream)  # hello
    assert b'id="row-typing-' in await next_frame(stream)  # the inbox, nobody typing yet
    assert b"typing\xe2\x80\xa6" in await next_frame(stream)  # then the mark, from the store
    await stream.aclose()
