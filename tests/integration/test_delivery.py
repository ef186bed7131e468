"""Real-time delivery through real app processes, PostgreSQL and Redis.

Every stream read has a deadline (see tests.clients.EventReader), so a lost event fails the
test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from tests.clients import Agent, Visitor, new_client_id
from tests.conftest import Seed
from tests.support import METRICS_AUTH, AppProcess, RedisProcess, run_async

StartApp = Callable[..., AppProcess]


@pytest.fixture
async def visitor(seed: Seed, app_env: dict[str, str], start_app: StartApp,
                  ) -> AsyncIterator[Visitor]:
    app = start_app(app_env)
    client = Visitor(app.url, seed.site_key)
    assert (await client.start("Hi, my order is late")).status_code == 201
    yield client
    await client.close()


async def signed_in(url: str, seed: Seed) -> Agent:
    agent = Agent(url)
    await agent.login(seed.email, seed.password)
    return agent


def bodies(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.data for e in events]


async def test_reconnect_replays_missed_history_once_and_shows_state_changed_meanwhile(
    visitor: Visitor, seed: Seed,
) -> None:
    agent = await signed_in(str(visitor.http.base_url), seed)
    conversation = visitor.conversation_id
    assert conversation is not None
    async with visitor.stream(after=0) as stream:
        first = await stream.entries(1)
        assert "Hi, my order is late" in first[0].data
        assert first[0].id == f"{conversation}-1"
        with pytest.raises(TimeoutError):  # and nothing more (the reader is done after this)
            await stream.entries(1, timeout=1.0)
    cursor = stream.last_id
    # While the visitor is away: a reply, a private note, and the conversation is closed.
    assert (await agent.reply(conversation, "Sorry! Checking now.")).status_code == 201
    assert (await agent.reply(conversation, "VIP customer", note=True)).status_code == 201
    assert (await agent.act(conversation, "close")).status_code == 200

    async with visitor.stream(last_event_id=cursor) as stream:
        events = await stream.until(lambda es: any("closed the conversation" in e.data
                                                   for e in es))
        await asyncio.sleep(0.3)
        entries = [e for e in events if e.id]
        assert [e.seq for e in entries] == [2, 3, 5]  # joined, reply, closed; never the note
        assert "Alex joined the conversation" in entries[0].data
        assert "Sorry! Checking now." in entries[1].data
        assert not any("VIP customer" in e.data for e in events)
        states = [e for e in events if e.id is None]
        assert 'data-status="closed"' in states[0].data  # state re-rendered before replay
    await agent.close()


async def test_a_retried_send_creates_one_message_and_emits_nothing_new(
    visitor: Visitor, seed: Seed, database: str,
) -> None:
    client_id = new_client_id()
    async with visitor.stream() as stream:
        responses = await asyncio.gather(*(visitor.send("Are you there?", client_id)
                                           for _ in range(5)))
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
        assert len({r.json()["message"]["seq"] for r in responses}) == 1
        entries = await stream.entries(1)
        assert "Are you there?" in entries[0].data
        with pytest.raises(TimeoutError):
            await stream.entries(1, timeout=1.0)

    async def count() -> int:
        from chat import db

        async with db.connect(database) as conn:
            return int(await conn.fetchval(
                "SELECT count(*) FROM messages WHERE client_id = $1", client_id))

    assert run_async(count()) == 1


async def test_agent_stream_shows_inbox_state_and_the_open_conversation_live(
    visitor: Visitor, seed: Seed,
) -> None:
    agent = await signed_in(str(visitor.http.base_url), seed)
    conversation = visitor.conversation_id
    assert conversation is not None
    async with agent.stream(conversation) as stream:
        snapshot = await stream.until(lambda es: len(es) >= 2)
        assert "Hi, my order is late" in snapshot[0].data  # the inbox row
        assert f'id="status-{conversation}"' in snapshot[1].data
        assert (await visitor.send("Hello?")).status_code == 201
        row = f'id="conversation-{conversation}"'
        live = await stream.until(
            lambda es: any(e.id for e in es) and any(row in e.data for e in es))
        assert [e.seq for e in live if e.id] == [2]  # at once
        assert any(row in e.data and "Hello?" in e.data for e in live)  # the row moved, in a tick
        assert (await agent.reply(conversation, "internal", note=True)).status_code == 201
        note = await stream.entries(1)
        assert "Private note" in note[0].data
    await agent.close()


async def test_a_message_posted_to_one_process_reaches_a_stream_on_another(
    seed: Seed, app_env: dict[str, str], redis_url: str, start_app: StartApp,
) -> None:
    env = dict(app_env, REDIS_URL=redis_url)
    a, b = start_app(env), start_app(env)
    writer = Visitor(a.url, seed.site_key)
    assert (await writer.start("first")).status_code == 201
    reader = Visitor(b.url, seed.site_key, writer.token)
    async with reader.stream(conversation_id=writer.conversation_id) as stream:
        for n in range(5):
            assert (await writer.send(f"message {n}")).status_code == 201
        entries = await stream.entries(5)
        assert [e.seq for e in entries] == [2, 3, 4, 5, 6]
        assert "message 4" in entries[-1].data
    await writer.close()
    await reader.close()


async def test_concurrent_writers_and_a_reader_that_keeps_reconnecting_see_each_entry_once(
    seed: Seed, app_env: dict[str, str], redis_url: str, start_app: StartApp,
) -> None:
    """Writers on one process, the reader on another, dropping its stream again and again."""
    env = dict(app_env, REDIS_URL=redis_url)
    a, b = start_app(env), start_app(env)
    visitor = Visitor(a.url, seed.site_key)
    assert (await visitor.start("start")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    agent_a = await signed_in(a.url, seed)
    assert (await agent_a.act(conversation, "claim")).status_code == 200
    writers, per_writer = 6, 25
    total = 2 + writers * per_writer  # the first message, the claim, then every write

    async def write(n: int) -> None:
        for i in range(per_writer):
            if n % 2:
                response = await visitor.send(f"visitor {n}.{i}")
            else:
                response = await agent_a.reply(conversation, f"agent {n}.{i}")
            assert response.status_code == 201, response.text

    reader = await signed_in(b.url, seed)
    seen: list[int] = []
    cursor: str | None = None
    write_all = asyncio.gather(*(write(n) for n in range(writers)))
    reconnects = 0
    while len(seen) < total:
        async with reader.stream(conversation, after=0 if cursor is None else None,
                                 last_event_id=cursor) as stream:
            reconnects += 1
            batch = random.randint(3, 20)
            got = await stream.entries(min(batch, total - len(seen)), timeout=30)
            seen += [e.seq for e in got if e.seq is not None]
            cursor = stream.last_id
    await write_all
    assert reconnects > 5
    assert seen == list(range(1, total + 1))
    for client in (visitor, agent_a, reader):
        await client.close()


async def test_messages_sent_while_redis_is_down_arrive_once_it_is_back(
    seed: Seed, app_env: dict[str, str], redis_process: RedisProcess, start_app: StartApp,
) -> None:
    env = dict(app_env, REDIS_URL=redis_process.url)
    a, b = start_app(env), start_app(env)
    agent = await signed_in(a.url, seed)
    visitor = Visitor(b.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    async with visitor.stream() as stream:
        assert (await agent.reply(conversation, "before the outage")).status_code == 201
        assert [e.seq for e in await stream.entries(2)] == [2, 3]  # joined, reply
        redis_process.kill()
        for n in range(3):
            response = await agent.reply(conversation, f"during the outage {n}")
            assert response.status_code == 201  # persisted; Redis is only the doorbell
        redis_process.start()
        entries = await stream.entries(3, timeout=30)
        assert [e.seq for e in entries] == [4, 5, 6]
        assert "during the outage 2" in entries[-1].data
        assert (await agent.reply(conversation, "after")).status_code == 201
        assert [e.seq for e in await stream.entries(1, timeout=15)] == [7]
    await agent.close()
    await visitor.close()


async def test_cursors_that_cannot_be_served_get_a_reload_event(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(dict(app_env, STREAM_REPLAY_LIMIT="5"))
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("one")).status_code == 201
    conversation = visitor.conversation_id
    for n in range(6):
        assert (await visitor.send(f"more {n}")).status_code == 201
    cases = {
        "too far behind": f"{conversation}-1",  # 6 entries to replay, limit 5
        "another conversation": f"{conversation + 1}-1",  # type: ignore[operator]
        "beyond the end": f"{conversation}-99",
        "malformed": "garbage",
    }
    for case, cursor in cases.items():
        async with visitor.stream(last_event_id=cursor) as stream:
            events = await stream.until(lambda es: any(e.event == "reload" for e in es))
            assert not any(e.id for e in events), case
            with pytest.raises(EOFError):
                await stream.next(timeout=5)
    async with visitor.stream(last_event_id=f"{conversation}-2") as stream:  # 5 behind: served
        assert [e.seq for e in await stream.entries(5)] == [3, 4, 5, 6, 7]
    await visitor.close()


async def test_a_consumer_that_stops_reading_is_dropped_and_others_are_unaffected(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(app_env)
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    conversation = visitor.conversation_id
    path = f"/widget/{seed.site_key}/conversations/{conversation}/stream"
    # A client with a tiny receive window that never reads.
    import socket

    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", app.port))
    stuck.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Visitor-Token: {visitor.token}\r\n\r\n"
                  .encode())
    rss_before = _rss(app)
    dropped = 'chat_streams_dropped_total{audience="visitor"}'
    async with visitor.stream() as healthy:
        received: list[int] = []

        async def read() -> None:
            while True:
                received.extend(e.seq for e in await healthy.entries(1, timeout=60) if e.seq)

        reader = asyncio.create_task(read())
        big, sent = "x" * 4900, 0
        while await _metric(app, dropped) == 0:
            assert sent < 4000, "the stuck stream was never dropped"
            for _ in range(50):
                assert (await visitor.send(f"{sent} {big}")).status_code == 201
                sent += 1
        async with asyncio.timeout(60):
            while len(received) < sent:
                await asyncio.sleep(0.05)
        assert received == list(range(2, sent + 2))  # the healthy stream missed nothing
        assert await _metric(app, dropped) == 1
        assert await _metric(app, 'chat_streams_open{audience="visitor"}') == 1
        reader.cancel()
    assert _rss(app) - rss_before < 50 * 1024 * 1024  # bounded: the stuck client holds little
    stuck.close()
    await visitor.close()


def _rss(app: AppProcess) -> int:
    import psutil

    assert app.process is not None
    return int(psutil.Process(app.process.pid).memory_info().rss)


async def _metric(app: AppProcess, name: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(app.url + "/metrics", headers=METRICS_AUTH)).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_closed_streams_leave_no_stream_subscription_or_task_behind(
    seed: Seed, app_env: dict[str, str], redis_url: str, start_app: StartApp,
) -> None:
    app = start_app(dict(app_env, REDIS_URL=redis_url))
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    agent = await signed_in(app.url, seed)
    async with visitor.stream():  # whatever a first stream sets up once, before counting
        pass
    await asyncio.sleep(0.5)
    tasks_before = await _metric(app, "chat_asyncio_tasks")
    for _ in range(10):
        async with visitor.stream(), agent.stream(visitor.conversation_id) as stream:
            await stream.next()

    async def settled() -> bool:
        return (await _metric(app, "chat_broker_subscriptions") == 0
                and await _metric(app, "chat_asyncio_tasks") <= tasks_before)

    async with asyncio.timeout(10):
        while not await settled():
            await asyncio.sleep(0.1)
    for audience in ("visitor", "agent"):
        assert await _metric(app, f'chat_streams_open{{audience="{audience}"}}') == 0
    # Redis channels outlive their last stream by a few seconds (a reconnect reuses them).
    redis = aioredis.from_url(redis_url)
    channels = [f"chat:conv:{visitor.conversation_id}", f"chat:site:{seed.site_id}"]
    async with asyncio.timeout(15):
        while any(count for _, count in await redis.pubsub_numsub(*channels)):
            await asyncio.sleep(0.2)
    await redis.aclose()
    await visitor.close()
    await agent.close()


async def test_a_client_that_goes_away_gives_its_stream_back_at_once(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    """Nothing is written to a quiet stream before its heartbeat (15 s), and the server's
    writes would not tell a disconnect anyway: the response notices it in receive()."""
    app = start_app(dict(app_env, STREAMS_PER_CLIENT="1"))
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    url = f"/widget/{seed.site_key}/conversations/{visitor.conversation_id}/stream"
    async with visitor.stream() as stream:
        await stream.until(lambda es: len(es) >= 1)  # the status banner; quiet from now on
        assert (await visitor.http.get(url, headers=visitor.headers)).status_code == 429
    # The client closed the connection: well within a heartbeat, the slot is free again.
    async with asyncio.timeout(5):
        while await app.metric('chat_streams_open{audience="visitor"}') > 0:
            await asyncio.sleep(0.05)
    assert await app.metric("chat_broker_subscriptions") == 0
    async with visitor.stream() as again:
        await again.until(lambda es: len(es) >= 1)
    await visitor.close()


async def test_a_head_request_for_a_stream_gets_its_headers_and_holds_nothing(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(dict(app_env, STREAMS_PER_CLIENT="1"))
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    url = f"/widget/{seed.site_key}/conversations/{visitor.conversation_id}/stream"
    for _ in range(2):  # a slot held by the first would refuse the second
        head = await visitor.http.head(url, headers=visitor.headers, timeout=5)
        assert head.status_code == 200, head.status_code
        assert head.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert head.headers["cache-control"] == "no-cache, no-store"
        assert head.headers["x-accel-buffering"] == "no"
    async with visitor.stream() as stream:
        await stream.until(lambda es: len(es) >= 1)
    await visitor.close()


async def test_sigterm_ends_open_streams_promptly(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(app_env)
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    async with visitor.stream() as stream:
        # The catch-up: the status banner, then whether the team is online.
        await stream.until(lambda es: any('id="team-presence"' in e.data for e in es))
        started = time.monotonic()
        app.stop()
        with pytest.raises(EOFError):  # a finished stream, not a broken connection
            await stream.next(timeout=10)
    assert time.monotonic() - started < 5
    assert app.process is not None and app.process.returncode == 0
    assert "without completing response" not in app.output()
    await visitor.close()


async def test_a_change_whose_publish_never_arrives_reaches_the_stream_through_the_repair_check(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    """Two processes without Redis share the database but no broker: every publish of one
    is lost to the other, as when a process dies between commit and publish. The other
    process's repair check still delivers the reply and the inbox row."""
    env = {**app_env, "REPAIR_INTERVAL": "1"}
    streaming, replying = start_app(env), start_app(env)
    visitor = Visitor(streaming.url, seed.site_key)
    assert (await visitor.start("Hello?")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    watcher = await signed_in(streaming.url, seed)
    agent = await signed_in(replying.url, seed)
    try:
        async with visitor.stream(after=1) as stream, watcher.stream() as inbox:  # both live
            assert (await agent.reply(conversation, "Found it, on its way")).status_code == 201
            entries = await stream.entries(2, timeout=10)  # the agent joined, then replied
            assert "Found it, on its way" in entries[1].data
            assert [e.id for e in entries] == [f"{conversation}-2", f"{conversation}-3"]
            rows = await inbox.until(
                lambda events: any("Found it, on its way" in e.data for e in events), timeout=10)
            assert f'id="conversation-{conversation}"' in rows[-1].data
    finally:
        await visitor.close()
        await watcher.close()
        await agent.close()
