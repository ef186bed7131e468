"""Typing and viewing signals: live on the other side, never stored, expired by the server.

Each test runs real app processes: one in memory mode, or two joined by Redis, where the
signal is posted to one process and heard on a stream of the other.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from chat import db
from chat.actions.agents import create_agent
from chat.signals import TYPING_TTL
from tests.clients import Agent, Event, EventReader, Visitor
from tests.conftest import Seed
from tests.support import AppProcess


def awareness(conversation_id: int) -> Callable[[Event], bool]:
    return lambda event: f'hx-target="#awareness-{conversation_id}"' in event.data


def row_typing(conversation_id: int) -> Callable[[Event], bool]:
    """The typing mark of a conversation's inbox row, or the row itself (which renders the
    mark empty)."""
    return lambda event: (f'hx-target="#row-typing-{conversation_id}"' in event.data
                          or f'id="row-typing-{conversation_id}"' in event.data)


async def next_matching(stream: EventReader, matches: Callable[[Event], bool],
                        timeout: float = 10) -> Event:
    events = await stream.until(lambda es: bool(es) and matches(es[-1]), timeout=timeout)
    return events[-1]


def text(event: Event) -> str:
    """What a frame shows, without its markup."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", event.data)).strip()


async def signed_in(url: str, email: str, password: str) -> Agent:
    agent = Agent(url)
    await agent.login(email, password)
    return agent


@pytest.fixture
async def sam(seed: Seed, database: str) -> tuple[str, str]:
    async with db.connect(database) as conn:
        await create_agent(conn, email="sam@example.com", name="Sam", password="sam password")
    return "sam@example.com", "sam password"


async def test_typing_reaches_the_other_side_and_expires_when_the_typist_goes_quiet(
    two_sides: tuple[AppProcess, AppProcess], seed: Seed,
) -> None:
    posting, streaming = two_sides  # with Redis, posted to one process, streamed from the other
    visitor = Visitor(posting.url, seed.site_key)
    assert (await visitor.start("hello", name="Dana")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    agent = await signed_in(posting.url, seed.email, seed.password)
    watcher = Agent(streaming.url)
    watcher.http.cookies = agent.http.cookies
    reader = Visitor(streaming.url, seed.site_key, visitor.token)
    async with watcher.stream(conversation, after=1, inbox="open") as dashboard, \
            reader.stream(after=1, conversation_id=conversation) as widget:
        # The visitor types: the dashboard shows it in the conversation and on its row.
        assert (await visitor.typing()).status_code == 204
        line = await next_matching(dashboard, awareness(conversation))
        assert text(line) == "Dana is typing…"
        typed_at = time.monotonic()
        # The agent types a reply: the visitor sees it; the agent's own stream does not.
        assert (await agent.signal(conversation, "typing")).status_code == 204
        shown = await next_matching(widget, awareness(conversation))
        assert text(shown) == "Alex is typing…"
        # The reply becomes a private note: the visitor sees nobody typing any more.
        assert (await agent.signal(conversation, "typing", note=True)).status_code == 204
        assert text(await next_matching(widget, awareness(conversation))) == ""
        # Nobody says anything more: the server itself expires the visitor's typing.
        events = await dashboard.until(
            lambda es: any(awareness(conversation)(e) and "typing" not in e.data for e in es),
            timeout=TYPING_TTL + 5)
        waited = time.monotonic() - typed_at
        assert TYPING_TTL - 1 <= waited <= TYPING_TTL + 4, waited
        assert not any("Alex" in e.data for e in events if awareness(conversation)(e))
        # The row's mark expires with it (sent with the process's rows, within a tick).
        if not any(row_typing(conversation)(e) and "typing" not in text(e) for e in events):
            events += await dashboard.until(lambda es: any(
                row_typing(conversation)(e) and "typing" not in text(e) for e in es), timeout=2)
        assert "typing…" not in [e for e in events if row_typing(conversation)(e)][-1].data
    for client in (visitor, reader, agent, watcher):
        await client.close()


async def test_a_message_ends_its_authors_typing_at_once(seed: Seed, app: AppProcess) -> None:
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    agent = await signed_in(app.url, seed.email, seed.password)
    async with agent.stream(conversation, after=1, inbox="open") as dashboard:
        await visitor.typing()
        assert "is typing" in (await next_matching(dashboard, awareness(conversation))).data
        assert (await visitor.send("my question")).status_code == 201
        # Long before the typing would expire, the message arrives and the typing is gone.
        events = await dashboard.until(
            lambda es: any(e.seq == 2 for e in es) and any(awareness(conversation)(e)
                                                           for e in es), timeout=3)
        assert [text(e) for e in events if awareness(conversation)(e)] == [""]
        # Its row, rendered afresh within a tick, shows nobody typing either.
        def row_shows_it(es: list[Event]) -> bool:
            return any(f'id="conversation-{conversation}"' in e.data and "my question" in e.data
                       for e in es)
        if not row_shows_it(events):
            events += await dashboard.until(row_shows_it, timeout=2)
        assert "typing…" not in [e for e in events if row_typing(conversation)(e)][-1].data
    await visitor.close()
    await agent.close()


async def test_agents_see_each_other_viewing_and_typing_and_the_visitor_sees_no_note(
    seed: Seed, sam: tuple[str, str], app: AppProcess,
) -> None:
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    alex = await signed_in(app.url, seed.email, seed.password)
    other = await signed_in(app.url, *sam)
    async with alex.stream(conversation, after=1) as alex_stream, \
            visitor.stream(after=1) as widget:
        assert (await other.signal(conversation, "viewing")).status_code == 204
        assert text(await next_matching(alex_stream, awareness(conversation))) == "Sam is viewing"
        await other.signal(conversation, "typing", note=True)
        line = await next_matching(alex_stream, awareness(conversation))
        assert text(line) == "Sam is writing a private note…"
        await other.signal(conversation, "left")
        assert text(await next_matching(alex_stream, awareness(conversation))) == ""
        # All the visitor heard of Sam's note was that nobody is typing.
        assert (await alex.signal(conversation, "typing")).status_code == 204
        events = await widget.until(lambda es: any("Alex is typing" in e.data for e in es))
        assert not any("Sam" in e.data or "note" in e.data for e in events)
    assert (await other.signal(conversation, "dancing")).status_code == 422
    for client in (visitor, alex, other):
        await client.close()


async def first_awareness(open_stream: Callable[[], AbstractAsyncContextManager[EventReader]],
                          conversation_id: int, then: Callable[[], Awaitable[object]]
                          | None = None) -> str:
    """What a stream opened now first shows of who is there: the catch-up's line, or, when
    it has none, the line that ``then`` (a later signal) makes it show."""
    async with open_stream() as stream:  # it has had its hello: the catch-up is on its way
        if then is not None:
            await then()
        return text(await next_matching(stream, awareness(conversation_id)))


async def test_a_stream_that_opens_later_shows_who_is_there_until_it_expires(
    two_sides: tuple[AppProcess, AppProcess], seed: Seed, sam: tuple[str, str],
) -> None:
    posting, streaming = two_sides  # streams open afterwards (with Redis, on the other one)
    visitor = Visitor(posting.url, seed.site_key)
    assert (await visitor.start("hello", name="Dana")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    alex = await signed_in(posting.url, seed.email, seed.password)
    other = await signed_in(streaming.url, *sam)
    reader = Visitor(streaming.url, seed.site_key, visitor.token)

    def sams_stream() -> AbstractAsyncContextManager[EventReader]:
        return other.stream(conversation, after=1, inbox="open")

    def widget_stream() -> AbstractAsyncContextManager[EventReader]:
        return reader.stream(after=1, conversation_id=conversation)

    await visitor.typing()
    await alex.signal(conversation, "typing")
    alex_typed_at = time.monotonic()
    # Nobody repeats a signal, yet a stream opened afterwards shows both typing at once.
    assert await first_awareness(sams_stream, conversation) == \
        "Dana is typing… Alex is typing a reply…"
    assert await first_awareness(widget_stream, conversation) == "Alex is typing…"
    # The visitor's message ends their typing for streams yet to open, too.
    assert (await visitor.send("my question")).status_code == 201
    assert await first_awareness(sams_stream, conversation) == "Alex is typing a reply…"
    # Once Alex's typing has expired unrefreshed, a new stream no longer shows it: the
    # first line it shows is the one the visitor's next keystroke brings.
    await asyncio.sleep(max(0.0, alex_typed_at + TYPING_TTL + 0.5 - time.monotonic()))
    assert await first_awareness(sams_stream, conversation, visitor.typing) == \
        "Dana is typing…"
    for client in (visitor, reader, alex, other):
        await client.close()
