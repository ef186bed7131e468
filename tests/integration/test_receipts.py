"""Receipts: delivered when a stream of the other side wrote it, read when that side says
so, stored (forward only, never past the history) and shown live on the sender's stream.

Each test runs real app processes: one in memory mode, or two joined by Redis, where the
visitor's stream is on one process and the agent's on the other.
"""

from __future__ import annotations

import re

from chat import db
from tests.clients import Agent, Event, EventReader, Visitor
from tests.conftest import Seed
from tests.support import AppProcess


def marks(stream_events: list[Event], conversation_id: int) -> list[tuple[int, int]]:
    """Every (delivered, read) the stream showed for the conversation's messages, in order."""
    found = []
    for event in stream_events:
        if f'hx-target="#receipts-{conversation_id}"' in event.data:
            delivered = re.search(r'data-delivered="(\d+)"', event.data)
            read = re.search(r'data-read="(\d+)"', event.data)
            assert delivered and read, event.data
            found.append((int(delivered[1]), int(read[1])))
    return found


async def until_marks(stream: EventReader, conversation_id: int,
                      wanted: tuple[int, int]) -> list[Event]:
    return await stream.until(lambda es: wanted in marks(es, conversation_id), timeout=10)


async def stored(database: str, conversation_id: int) -> tuple[int, int, int, int] | None:
    async with db.connect(database) as conn:
        row = await conn.fetchrow(
            "SELECT visitor_delivered, visitor_read, agent_delivered, agent_read"
            " FROM receipts WHERE conversation_id = $1", conversation_id)
    return None if row is None else tuple(row)  # type: ignore[return-value]


async def test_a_reply_is_delivered_by_the_visitors_stream_and_read_when_the_visitor_says(
    two_sides: tuple[AppProcess, AppProcess], seed: Seed, database: str,
) -> None:
    widget_side, agent_side = two_sides
    visitor = Visitor(widget_side.url, seed.site_key)
    assert (await visitor.start("Where is my order?")).status_code == 201
    conversation = visitor.conversation_id
    assert conversation is not None
    agent = Agent(agent_side.url)
    await agent.login(seed.email, seed.password)
    async with agent.stream(conversation, after=1) as dashboard:
        # Nobody on the visitor's side has received anything yet.
        assert marks(await dashboard.until(lambda es: bool(marks(es, conversation))),
                     conversation) == [(0, 0)]
        assert (await agent.reply(conversation, "On its way.")).status_code == 201
        def is_reply(event: Event) -> bool:
            return event.id is not None and "On its way." in event.data
        reply = next(e.seq for e in await dashboard.until(lambda es: any(map(is_reply, es)))
                     if is_reply(e))
        assert reply is not None and reply >= 2

        # The visitor's stream opens and writes it: delivered, not read.
        async with visitor.stream(after=1) as widget:
            await widget.until(lambda es: any(e.seq == reply for e in es))
            await until_marks(dashboard, conversation, (reply, 0))
            # The visitor looks at it: read. A claim beyond the history stops at its end,
            # and an older one moves nothing back.
            read = f"/widget/{seed.site_key}/conversations/{conversation}/read"
            response = await visitor.http.post(read, headers=visitor.headers,
                                               data={"seq": str(reply + 1000)})
            assert response.status_code == 204
            await until_marks(dashboard, conversation, (reply, reply))
            response = await visitor.http.post(read, headers=visitor.headers, data={"seq": "1"})
            assert response.status_code == 204
            bad = await visitor.http.post(read, headers=visitor.headers, data={"seq": "x"})
            assert bad.status_code == 422
    assert (await stored(database, conversation))[:2] == (reply, reply)  # type: ignore[index]
    # The agent's stream had read the visitor's message: the team's cursors are there too.
    assert (await stored(database, conversation))[2] >= 1  # type: ignore[index]

    # Stored: a stream opening later, on either process, shows the same marks at once.
    async with agent.stream(conversation, after=reply) as again:
        assert marks(await again.until(lambda es: bool(marks(es, conversation))),
                     conversation) == [(reply, reply)]
    for client in (visitor, agent):
        await client.close()
