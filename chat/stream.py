"""The SSE stream core shared by the widget and the dashboard.

A stream carries two kinds of data (see the design, section 5):

- **state** (inbox rows, a conversation's status) is re-rendered from the database whenever
  the stream (re)connects or resyncs, and afterwards updated from published changes,
  dropping any change older than what was already shown (each state has a version);
- **history** of at most one conversation is sent with ``id: C-S`` cursors: replayed from
  the database after the client's cursor, then live, never sending a sequence twice and
  filling from the database any gap that the broker's ordering left.

Order on (re)connect: subscribe, re-render state, replay history, then live. A cursor that
cannot be served (another conversation, beyond the end, or too far behind) gets a
``reload`` event and the stream ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chat import events, frames, metrics
from chat.broker import RESYNC, Delivery, Overflow, Subscription, subscribed
from chat.db import Connection
from chat.events import Cursor
from chat.frames import Audience
from chat.models import Change, ConversationState, Entry
from chat.queries import conversations, messages
from chat.services import Services

logger = logging.getLogger(__name__)

MAX_VERSIONS_TRACKED = 10_000


@functools.lru_cache(maxsize=1024)
def decode(payload: bytes) -> Change:
    """Every stream of a process gets the same payload object: decode it once."""
    return Change.decode(payload)


class View(Protocol):
    """What one kind of stream shows; the dashboard and the widget each define one."""

    @property
    def audience(self) -> Audience: ...

    @property
    def topics(self) -> Sequence[str]: ...

    @property
    def conversation_id(self) -> int | None:
        """Whose history this stream carries, if any."""
        ...

    async def snapshot(self, conn: Connection) -> tuple[list[bytes], list[ConversationState]]:
        """Frames that re-render all of this view's state, and the states they showed."""
        ...

    def state_frames(self, state: ConversationState) -> list[bytes]:
        """Frames that show a changed conversation state (empty when not shown here)."""
        ...

    async def positions(self, conn: Connection,
                        tracked: Collection[int]) -> dict[int, conversations.Position]:
        """Where every conversation this view shows is now (``tracked``: those it has seen)."""
        ...


@dataclass
class StreamLimits:
    queue_size: int = 256
    replay_limit: int = 500
    check_interval: float = 20.0  # seconds of silence before checking the database


@dataclass
class Stream:
    """One client's stream; iterate :meth:`frames` inside an SSE response."""

    svc: Services
    view: View
    cursor: Cursor | None
    limits: StreamLimits = field(default_factory=StreamLimits)
    last_seq: int | None = None  # the newest history sequence the client has, once known
    versions: dict[int, int] = field(default_factory=dict)  # newest state shown, by conversation
    shown: dict[int, list[bytes]] = field(default_factory=dict)  # its frames, by conversation
    # Set when the client fell behind, so the response can end even while blocked sending.
    fell_behind: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    _subscription: Subscription | None = None

    def stop(self) -> None:
        """End the stream cleanly (the server is shutting down); the client will reconnect."""
        self.stopping = True
        if self._subscription is not None:
            self._subscription.offer(RESYNC)  # wakes the loop, which then sees ``stopping``

    async def frames(self) -> AsyncIterator[bytes]:
        audience = self.view.audience
        metrics.STREAMS_OPEN.labels(audience).inc()
        try:
            async with subscribed(self.svc.broker, self.view.topics, self.limits.queue_size,
                                  self.fell_behind.set) as sub:
                self._subscription = sub
                yield frames.HELLO
                batch, source = await self._catch_up(), "replay"
                while batch is not None:
                    if batch:
                        # One write per wake-up, however many events it carries.
                        metrics.EVENTS_SENT.labels(audience, source).inc(len(batch))
                        yield b"".join(batch)
                    try:
                        async with asyncio.timeout(self.limits.check_interval):
                            item = await sub.get()
                    except Overflow:
                        return  # the response counts and logs the drop (see fell_behind)
                    except TimeoutError:
                        batch, source = await self._check(), "repair"
                        continue
                    if self.stopping:
                        return
                    if isinstance(item, Delivery) and item.payload == events.RELOAD:
                        batch = None  # signed out, or its state can no longer be shown
                    elif isinstance(item, Delivery):
                        batch, source = await self._apply(decode(item.payload)), "live"
                    else:
                        batch, source = await self._catch_up(), "resync"
                yield frames.RELOAD
        finally:
            metrics.STREAMS_OPEN.labels(audience).dec()

    async def _catch_up(self) -> list[bytes] | None:
        """Re-render state, then replay history after the client's position.

        None when the client's position cannot be served and it must reload instead.
        """
        async with self.svc.pool.acquire() as conn:
            batch, states = await self.view.snapshot(conn)
            self._remember(states)
            self.shown.clear()  # the snapshot re-rendered everything
            conversation = next((s for s in states if s.id == self.view.conversation_id), None)
            if conversation is None:
                return batch
            position = self._position(conversation)
            if position is None:
                return None
            batch += self._frames(await self._history(conn, position, conversation.last_seq))
        return batch

    async def _check(self) -> list[bytes] | None:
        """Catch up if the database is ahead of what this stream sent.

        The broker is only a doorbell: a process that dies between commit and publish
        rings no bell. Checking now and then bounds how long such a change can wait.
        """
        async with self.svc.pool.acquire() as conn:
            now = await self.view.positions(conn, self.versions.keys())
        history = now.get(self.view.conversation_id or 0)
        behind = history is not None and history[0] > (self.last_seq or 0)
        stale = [(id_, version) for id_, (_, version) in now.items()
                 if version > self.versions.get(id_, 0)]
        if not behind and not stale:
            return []
        metrics.STREAM_REPAIRS.labels(self.view.audience).inc()
        # Remember them even if the snapshot no longer lists them (a row that left the
        # inbox), or every later check would find them stale again.
        for id_, version in stale:
            self.versions[id_] = version
        return await self._catch_up()

    def _position(self, conversation: ConversationState) -> int | None:
        """Where replay starts: the client's cursor, or now; None if that cannot be served."""
        if self.last_seq is None and self.cursor is None:
            self.last_seq = conversation.last_seq  # no cursor: live from now on
        elif self.last_seq is None:
            assert self.cursor is not None
            if self.cursor.conversation_id != conversation.id:
                return self._refuse("foreign")
            self.last_seq = self.cursor.seq
        behind = conversation.last_seq - self.last_seq
        if behind < 0:
            return self._refuse("ahead")
        if behind > self.limits.replay_limit:
            return self._refuse("behind")
        return self.last_seq

    def _refuse(self, reason: str) -> int | None:
        metrics.STREAM_RELOADS.labels(self.view.audience, reason).inc()
        logger.info("A %s stream's cursor %s is %s; asking for a reload",
                    self.view.audience, self.cursor, reason)
        return None

    async def _apply(self, change: Change) -> list[bytes]:
        """Frames for a published change: its state if newer, its entries if not yet sent."""
        batch: list[bytes] = []
        state = change.conversation
        if state.version > self.versions.get(state.id, 0):
            self._remember([state])
            shown = self.view.state_frames(state)
            if shown != self.shown.get(state.id):  # most messages leave the status as it was
                self.shown[state.id] = shown
                batch += shown
        if state.id != self.view.conversation_id or self.last_seq is None:
            return batch
        metrics.DELIVERY_LAG.observe(max(0.0, time.time() - change.published_at))
        for entry in change.entries:
            if entry.seq <= self.last_seq:
                continue  # already sent: replayed, or fetched by a gap fill
            if entry.seq > self.last_seq + 1:
                # The broker delivered this before an earlier entry: fill from the log.
                metrics.GAP_FILLS.labels(self.view.audience).inc()
                async with self.svc.pool.acquire() as conn:
                    batch += self._frames(await self._history(conn, self.last_seq, entry.seq))
            else:
                batch += self._frames([entry])
        return batch

    async def _history(self, conn: Connection, after: int, up_to: int) -> list[Entry]:
        """Entries in (after, up_to] that this audience sees, oldest first; moves past them."""
        assert self.view.conversation_id is not None
        if up_to <= after:
            return []
        entries = await messages.after(conn, self.view.conversation_id, after, up_to - after,
                                       notes=self.view.audience == "agent")
        self.last_seq = up_to  # entries this audience does not see count as seen
        return entries

    def _frames(self, entries: Sequence[Entry]) -> list[bytes]:
        """Frames for new entries, advancing the position past each (hidden ones too)."""
        batch = []
        for entry in entries:
            assert self.last_seq is not None
            self.last_seq = max(self.last_seq, entry.seq)
            if self.view.audience == "agent" or entry.visible_to_visitor:
                batch.append(frames.entry(entry, self.view.audience))
        return batch

    def _remember(self, states: Sequence[ConversationState]) -> None:
        if len(self.versions) > MAX_VERSIONS_TRACKED:
            self.versions.clear()  # rare; at worst a stale state shows until the next change
            self.shown.clear()
        for state in states:
            self.versions[state.id] = max(state.version, self.versions.get(state.id, 0))
