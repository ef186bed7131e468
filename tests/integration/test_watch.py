"""One stream for several conversations (``?watch=C-S,...``): what one browser tab holds for
all of a browser's tabs, on a real uvicorn, PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.clients import Agent, Event, Visitor
from tests.conftest import Seed
from tests.support import AppProcess

StartApp = Callable[..., AppProcess]


@pytest.fixture
async def maria(app: AppProcess, seed: Seed) -> AsyncIterator[Visitor]:
    """A visitor with two conversations (a second start opens another one)."""
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("first conversation")).status_code == 201
    assert (await visitor.start("second conversation")).status_code == 201
    yield visitor
    await visitor.close()


@pytest.fixture
async def agent(app: AppProcess, seed: Seed) -> AsyncIterator[Agent]:
    client = Agent(app.url)
    await client.login(seed.email, seed.password)
    yield client
    await client.close()


def conversations_of(visitor: Visitor) -> tuple[int, int]:
    second = visitor.conversation_id
    assert second is not None
    return second - 1, second  # ids are handed out in order, and nobody else started one


def cursors(events: list[Event]) -> list[str]:
    return [e.id for e in events if e.id]


async def test_replay_starts_after_each_watched_conversations_own_cursor(
    maria: Visitor,
) -> None:
    first, second = conversations_of(maria)
    for n in range(3):
        assert (await maria.send(f"first {n}", conversation_id=first)).status_code == 201
        assert (await maria.send(f"second {n}", conversation_id=second)).status_code == 201
    async with maria.watch({first: 2, second: 3}) as stream:
        events = await stream.until(lambda es: len(cursors(es)) == 3)
        # Each conversation's status, then its history after its own cursor; nothing else.
        assert [e.id for e in events] == [None, None, f"{first}-3", f"{first}-4", f"{second}-4"]
        assert f'id="status-{first}"' in events[0].data
        assert f'id="status-{second}"' in events[1].data
        assert "first 1" in events[2].data and "second 2" in events[4].data
        with pytest.raises(TimeoutError):
            await stream.entries(1, timeout=1.0)


async def test_every_watched_conversation_is_live_on_the_one_stream(
    maria: Visitor, agent: Agent,
) -> None:
    first, second = conversations_of(maria)
    async with maria.watch({first: 1, second: 1}) as stream:
        assert (await agent.reply(first, "to the first")).status_code == 201
        assert (await maria.send("in the second", conversation_id=second)).status_code == 201
        assert (await agent.reply(second, "hidden from the visitor", note=True)).status_code == 201
        assert (await agent.reply(second, "to the second")).status_code == 201
        entries = await stream.entries(5)
        # The first: joined, reply. The second: the visitor's, (the note, unseen), joined, reply.
        assert cursors(entries) == [f"{first}-2", f"{first}-3", f"{second}-2", f"{second}-4",
                                    f"{second}-5"]
        assert not any("hidden from the visitor" in e.data for e in entries)
        assert "to the second" in entries[-1].data


async def test_an_agent_stream_carries_the_inbox_and_several_conversations_notes_included(
    maria: Visitor, agent: Agent,
) -> None:
    first, second = conversations_of(maria)
    async with agent.stream(watch={first: 1, second: 1}, inbox="open") as stream:
        snapshot = await stream.until(lambda es: len(es) >= 3)
        assert 'hx-target="#inbox[data-inbox]"' in snapshot[0].data  # the whole inbox
        statuses = {e.data.split('hx-target="#status-')[1].split('"')[0] for e in snapshot[1:]}
        assert statuses == {str(first), str(second)}  # and each watched one's status
        assert (await agent.reply(second, "a private note", note=True)).status_code == 201
        assert (await maria.send("more", conversation_id=first)).status_code == 201
        entries = await stream.entries(2)
        assert cursors(entries) == [f"{second}-2", f"{first}-2"]
        assert "a private note" in entries[0].data
    async with agent.stream(watch={first: 2}, inbox="") as stream:  # no inbox rows at all
        assert (await maria.send("only history", conversation_id=first)).status_code == 201
        events = await stream.until(lambda es: any(e.id for e in es))
        assert not any("conversation-row" in e.data for e in events)
        assert cursors(events) == [f"{first}-3"]


async def test_a_cursor_that_cannot_be_served_reloads_only_its_conversation(
    maria: Visitor,
) -> None:
    first, second = conversations_of(maria)
    async with maria.watch({first: 1, second: 99}) as stream:  # beyond the second's end
        events = await stream.until(lambda es: any(e.event == "reload" for e in es))
        assert [(e.event, e.data) for e in events] == [("reload", str(second))]
        with pytest.raises(EOFError):  # and the stream ends, to be opened again without it
            await stream.next(timeout=5)


async def test_a_visitor_can_watch_only_their_own_conversations_and_not_too_many(
    app: AppProcess, seed: Seed, maria: Visitor,
) -> None:
    first, second = conversations_of(maria)
    bob = Visitor(app.url, seed.site_key)
    assert (await bob.start("I am Bob")).status_code == 201
    url = f"/widget/{seed.site_key}/stream"
    mine_and_maria = await bob.http.get(url, params={"watch": f"{bob.conversation_id}-1,"
                                                              f"{first}-1"}, headers=bob.headers)
    assert mine_and_maria.status_code == 404
    nowhere = await bob.http.get(url, params={"watch": "999999-1"}, headers=bob.headers)
    assert nowhere.status_code == 404
    assert mine_and_maria.json() == nowhere.json()  # not theirs and not there look the same
    anonymous = await httpx.AsyncClient(base_url=app.url).get(url, params={"watch": f"{first}-1"})
    assert anonymous.status_code == 401
    many = ",".join(f"{second}-{n}" for n in range(51))
    too_many = await maria.http.get(url, params={"watch": many}, headers=maria.headers)
    assert too_many.status_code == 422 and "at most 50" in too_many.json()["error"]
    for bad in ("12", "12-", "a-1", "1-2-3", "²-1", "1-" + "9" * 19, "1-1,,2-2"):
        response = await maria.http.get(url, params={"watch": bad}, headers=maria.headers)
        assert response.status_code == 422, bad
        assert "CONVERSATION-SEQ" in response.json()["error"]
    await bob.close()


async def test_the_dashboard_stream_refuses_unknown_conversations_and_inboxes(
    agent: Agent, maria: Visitor,
) -> None:
    first, _ = conversations_of(maria)
    unknown = await agent.http.get("/stream", params={"watch": f"{first}-1,999999-1"})
    assert unknown.status_code == 404
    inbox = await agent.http.get("/stream", params={"inbox": "everything"})
    assert inbox.status_code == 422 and "inbox must be" in inbox.json()["error"]
    garbage = await agent.http.get("/stream", headers={"Last-Event-ID": "²-1".encode()},
                                   params={"conversation": str(first)})
    assert garbage.status_code == 200  # a malformed cursor is answered with a reload
    assert f"event: reload\nretry: 2000\ndata: {first}" in garbage.text


async def test_a_visitor_stream_watching_nothing_still_opens(maria: Visitor) -> None:
    async with maria.watch({}) as stream:
        assert 'id="team-presence"' in (await stream.next()).data  # whether anyone answers
        with pytest.raises(TimeoutError):
            await stream.next(timeout=1.0)  # heartbeats only (every 15 s)
