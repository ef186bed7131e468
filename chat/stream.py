"""The SSE stream core shared by the widget and the dashboard.

A stream carries two kinds of data (see the design, section 5):

- **state** (inbox rows, a conversation's status) is re-rendered from the database whenever
  the stream (re)connects or resyncs, and afterwards updated from published changes,
  dropping any change older than what was already shown (each state has a version);
  inbox rows, the state of conversations a dashboard does not watch, come instead from
  its process's feed (:mod:`chat.rows`), a batch a tick, shared by every dashboard;
- **history** of the conversations the stream watches (one page's, or every tab's of a
  browser when one tab holds the stream for all) is sent with ``id: C-S`` cursors: for
  each conversation, replayed from the database after the client's cursor, then live,
  never sending a sequence twice and filling from the database any gap that the broker's
  ordering left.

Order on (re)connect: subscribe, re-render state, replay history, then live. Cursors that
cannot be served (another conversation, beyond the end, or too far behind) get a
``reload`` event naming their conversations, and the stream ends.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chat import events, frames, metrics, receipts, signals
from chat.broker import RESYNC, Delivery, Item, Overflow, Subscription, subscribed
from chat.db import Connection
from chat.events import Cursor
from chat.frames import Audience
from chat.models import Change, ConversationState, Entry, Receipts
from chat.queries import messages
from chat.queries import receipts as stored_receipts
from chat.roster import Team, is_team
from chat.services import Services
from chat.signals import Awareness, Signal

logger = logging.getLogger(__name__)

MAX_VERSIONS_TRACKED = 10_000
# What frames() yields after (about) ``StreamLimits.heartbeat`` seconds with nothing to send, so
# that the response can send a heartbeat without a timer of its own.
IDLE = b""
NOBODY = Awareness()


@functools.lru_cache(maxsize=1024)
def decode(payload: bytes) -> Change:
    """Every stream of a process gets the same payload object: decode it once."""
    return Change.decode(payload)


@functools.lru_cache(maxsize=256)
def decode_signal(payload: bytes) -> Signal:
    return Signal.decode(payload)


@functools.lru_cache(maxsize=256)
def decode_receipts(payload: bytes) -> Receipts:
    return Receipts.decode(payload)


class View(Protocol):
    """What one kind of stream shows; the dashboard and the widget each define one."""

    @property
    def audience(self) -> Audience: ...

    @property
    def topics(self) -> Sequence[str]: ...

    @property
    def watched(self) -> Collection[int]:
        """The conversations whose history this stream carries (maybe none)."""
        ...

    @property
    def row_topics(self) -> Sequence[str]:
        """The sites whose inbox rows this stream shows (see :mod:`chat.rows`), if any."""
        ...

    async def snapshot(self, conn: Connection) -> tuple[list[bytes], list[ConversationState]]:
        """Frames that re-render all of this view's state, and the states they showed
        (every watched conversation's among them)."""
        ...

    def state_frames(self, state: ConversationState) -> list[bytes]:
        """Frames that show a watched conversation's changed state."""
        ...

    def hears(self, signal: Signal) -> bool:
        """Whether this stream shows ``signal`` (see :mod:`chat.signals`)."""
        ...

    def awareness_frames(self, conversation_id: int, awareness: Awareness) -> list[bytes]:
        """Frames that show who is typing, viewing or on a page in a conversation now."""
        ...

    def team_frames(self, team: Team) -> list[bytes]:
        """Frames that show the team's presence (see :mod:`chat.roster`)."""
        ...


@dataclass
class StreamLimits:
    queue_size: int = 256
    replay_limit: int = 500
    heartbeat: float | None = None  # at most this long with nothing to send, yield IDLE


@dataclass(slots=True)  # one per open stream: no __dict__ (about 200 bytes each less)
class Stream:
    """One client's stream; iterate :meth:`frames` inside an SSE response.

    ``cursors`` says where the client is in each watched conversation; one without a
    cursor is live from now on. A cursor may name another conversation than the one it
    stands for (a ``Last-Event-ID`` from elsewhere): that one cannot be served.
    """

    svc: Services
    view: View
    cursors: Mapping[int, Cursor | None] = field(default_factory=dict)
    limits: StreamLimits = field(default_factory=StreamLimits)
    # When the client's right to it ends (its session expires), as a Unix time: the stream
    # then tells the page to reload, which takes it to the sign-in page.
    ends_at: float | None = None
    # The newest history sequence the client has, by watched conversation, once known.
    sent: dict[int, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)  # newest state shown, by conversation
    shown: dict[int, list[bytes]] = field(default_factory=dict)  # its frames, by conversation
    refused: list[int] = field(default_factory=list)  # conversations whose cursor can't be served
    # Set when the client fell behind; on_fell_behind is called at that moment, so the
    # response can end even while blocked sending.
    fell_behind: bool = False
    on_fell_behind: Callable[[], None] | None = None
    awareness: Awareness = field(default_factory=Awareness)
    # The awareness frames last sent, by conversation: a change to one of its lines (say,
    # the visitor's page) leaves the others unsent.
    aware_shown: dict[int, set[bytes]] = field(default_factory=dict)
    # The receipts shown, by watched conversation, and the newest entry of the other side's
    # written since the last report (see chat.receipts), by conversation.
    receipts: dict[int, Receipts] = field(default_factory=dict)
    reached: dict[int, int] = field(default_factory=dict)

    def _fall_behind(self) -> None:
        self.fell_behind = True
        if self.on_fell_behind is not None:
            self.on_fell_behind()

    async def frames(self) -> AsyncIterator[bytes]:
        audience = self.view.audience
        metrics.STREAMS_OPEN.labels(audience).inc()
        try:
            async with (subscribed(self.svc.broker, self.view.topics, self.limits.queue_size,
                                   self._fall_behind, self._unwanted) as sub,
                        self._rows(sub)):
                batch, source = await self._catch_up(), "replay"
                # Only now: a client that writes once it has the hello is sure to hear of it,
                # even without a cursor (live from the catch-up's "now").
                yield frames.HELLO
                while batch is not None:
                    if batch:
                        # One write per wake-up, however many events it carries.
                        metrics.EVENTS_SENT.labels(audience, source).inc(len(batch))
                        yield b"".join(batch)
                        self._report_delivered()  # written: the client has it
                    if self._expired():
                        break
                    try:
                        first = await sub.get_within(self._time_left())
                    except Overflow:
                        return  # the response counts and logs the drop (see fell_behind)
                    if first is None:  # nothing came in time
                        if self._expired():
                            break  # the session expired
                        batch = self._awareness(self.awareness.expire(time.monotonic()))
                        if not batch:
                            yield IDLE
                        continue
                    batch, source = await self._handle([first, *sub.ready()])
                yield frames.reload(self.refused)
        finally:
            metrics.STREAMS_OPEN.labels(audience).dec()

    @contextlib.asynccontextmanager
    async def _rows(self, sub: Subscription) -> AsyncIterator[None]:
        """Inbox rows from the process's feed, from before the catch-up reads them on."""
        if not self.view.row_topics:
            yield
            return
        await self.svc.rows.join(sub, self.view.row_topics)
        try:
            yield
        finally:
            await self.svc.rows.leave(sub)

    async def _handle(self, items: Sequence[Item]) -> tuple[list[bytes] | None, str]:
        """Frames for what woke the stream, all sent in one write (None: reload instead)."""
        if any(item is RESYNC for item in items):
            return await self._catch_up(), "resync"  # it re-reads all the others showed
        batch: list[bytes] = []
        for item in items:
            assert isinstance(item, Delivery)
            if item.topic == events.ROWS:
                batch.append(item.payload)  # joined once for every dashboard
            elif item.payload == events.RELOAD:
                return None, "live"  # signed out, or its state can no longer be shown
            elif signals.is_signal(item.payload):
                batch += self._heard(decode_signal(item.payload))
            elif is_team(item.payload):
                batch += self.view.team_frames(Team.decode(item.payload))
            elif receipts.is_receipts(item.payload):
                batch += self._receipts(decode_receipts(item.payload))
            else:
                batch += await self._apply(decode(item.payload))
        return batch, "live"

    def _heard(self, signal: Signal) -> list[bytes]:
        # What the view does not hear was dropped on arrival (_unwanted).
        if not self.awareness.heard(signal, time.monotonic()):
            return []  # shown already (a refresh)
        return self._awareness([signal.conversation_id])

    def _awareness(self, conversation_ids: Collection[int]) -> list[bytes]:
        batch = []
        for id_ in conversation_ids:
            made = self.view.awareness_frames(id_, self.awareness)
            sent = self.aware_shown.get(id_)
            if sent is None:  # what the page shows before anyone is heard of: nobody
                sent = set(self.view.awareness_frames(id_, NOBODY))
            batch += [frame for frame in made if frame not in sent]
            self.aware_shown[id_] = set(made)
        return batch

    def _receipts(self, heard: Receipts) -> list[bytes]:
        """The marks of a watched conversation's messages, if they moved."""
        id_ = heard.conversation_id
        if id_ not in self.view.watched:
            return []
        shown = self.receipts.get(id_)
        merged = heard if shown is None else shown.merge(heard)  # a late one cannot go back
        if merged == shown:
            return []
        self.receipts[id_] = merged
        return [frames.receipts(merged, self.view.audience)]

    def _reach(self, conversation_id: int, seq: int) -> None:
        self.reached[conversation_id] = max(seq, self.reached.get(conversation_id, 0))

    def _report_delivered(self) -> None:
        if self.reached and self.svc.recorder is not None:
            self.svc.recorder.delivered(self.view.audience, self.reached)
        self.reached.clear()

    def _unwanted(self, delivery: Delivery) -> bool:
        """What concerns a conversation this stream does not watch: a dashboard hears its
        sites' topics for the conversations it has open, and gets the inbox rows of them
        all from its process's feed (chat.rows)."""
        payload = delivery.payload
        if delivery.topic == events.ROWS or payload == events.RELOAD or is_team(payload):
            return False
        if receipts.is_receipts(payload):
            return decode_receipts(payload).conversation_id not in self.view.watched
        if signals.is_signal(payload):
            return not self.view.hears(decode_signal(payload))
        return decode(payload).conversation.id not in self.view.watched

    def _time_left(self) -> float | None:
        """How long to wait for a delivery: until the end, if the stream has one, and
        no longer than a heartbeat."""
        waits = []
        if self.limits.heartbeat is not None:
            # Between 80 % and all of it, at random: streams woken together (by a change
            # every one shows) must not all wake together again at every heartbeat.
            waits.append(self.limits.heartbeat * random.uniform(0.8, 1.0))
        if self.ends_at is not None:
            waits.append(max(0.0, self.ends_at - time.time()))
        expiry = self.awareness.next_expiry()
        if expiry is not None:
            waits.append(max(0.0, expiry - time.monotonic()))
        return min(waits, default=None)

    def _expired(self) -> bool:
        return self.ends_at is not None and time.time() >= self.ends_at

    async def _catch_up(self) -> list[bytes] | None:
        """Re-render state, then replay each watched conversation's history after the
        client's position in it.

        None when a position cannot be served (see ``refused``) and the client must
        reload instead.
        """
        async with self.svc.pool.acquire() as conn:
            batch, states = await self.view.snapshot(conn)
            if self.svc.repairer is not None:
                self.svc.repairer.saw(states)
            self.shown.clear()  # the snapshot re-rendered everything
            self.aware_shown.clear()
            watched = {s.id: s for s in states if s.id in self.view.watched}
            self._remember(list(watched.values()))
            self.refused = [id_ for id_, state in watched.items() if not self._position(state)]
            if self.refused:
                return None
            for state in watched.values():
                batch += self._frames(await self._history(conn, state.id, state.last_seq))
            self.receipts.clear()
            for stored in await stored_receipts.of(conn, list(watched)):
                batch += self._receipts(stored)
        for state in states:  # the page has each up to here now, or an inbox row of it
            self._reach(state.id, state.last_seq)
        await self._recall(list(watched))
        if self.view.row_topics:
            await self.svc.rows.recall(self.svc.presence, [s.id for s in states])
            batch += self.svc.rows.marks()
        if self.svc.roster is not None:
            batch += self.view.team_frames(self.svc.roster.team)
        return batch + self._awareness([s.id for s in states if self.awareness.knows(s.id)])

    async def _recall(self, conversation_ids: Sequence[int]) -> None:
        """Take in who is typing or viewing now in the conversations shown, as if heard
        when they signalled: a stream that opens shows them before their next refresh."""
        if not conversation_ids:
            return
        now, wall = time.monotonic(), time.time()
        for signal in await signals.recall(self.svc.presence, conversation_ids):
            if self.view.hears(signal):
                self.awareness.heard(signal, now - max(0.0, wall - signal.at))

    def _position(self, conversation: ConversationState) -> bool:
        """Settle where replay of ``conversation`` starts: the client's cursor, or now.

        False if that position cannot be served.
        """
        id_ = conversation.id
        if id_ not in self.sent:
            cursor = self.cursors.get(id_)
            if cursor is None:
                self.sent[id_] = conversation.last_seq  # no cursor: live from now on
            elif cursor.conversation_id != id_:
                return self._refuse(conversation, "foreign")
            else:
                self.sent[id_] = cursor.seq
        behind = conversation.last_seq - self.sent[id_]
        if behind < 0:
            return self._refuse(conversation, "ahead")
        if behind > self.limits.replay_limit:
            return self._refuse(conversation, "behind")
        return True

    def _refuse(self, conversation: ConversationState, reason: str) -> bool:
        metrics.STREAM_RELOADS.labels(self.view.audience, reason).inc()
        logger.info("A %s stream's cursor %s for conversation %s is %s; asking for a reload",
                    self.view.audience, self.cursors.get(conversation.id), conversation.id,
                    reason)
        return False

    async def _apply(self, change: Change) -> list[bytes]:
        """Frames for a published change: its state if newer, its entries if not yet sent."""
        batch: list[bytes] = []
        state = change.conversation
        # A message ends its author's typing...
        stopped = any([self.awareness.arrived(entry) for entry in change.entries])
        rerendered = False
        if state.version > self.versions.get(state.id, 0):
            self._remember([state])
            shown = self.view.state_frames(state)
            if shown != self.shown.get(state.id):  # most messages leave the status as it was
                self.shown[state.id] = shown
                batch += shown
                rerendered = True
        # ... and a re-rendered status shows nobody typing: everything is due again.
        if rerendered:
            self.aware_shown[state.id] = set()
        if stopped or (rerendered and self.awareness.of(state.id)):
            batch += self._awareness([state.id])
        if state.id not in self.sent:  # not watched, or not caught up with yet
            return batch
        metrics.DELIVERY_LAG.observe(max(0.0, time.time() - change.published_at))
        for entry in change.entries:
            sent = self.sent[state.id]
            if entry.seq <= sent:
                continue  # already sent: replayed, or fetched by a gap fill
            if entry.seq > sent + 1:
                # The broker delivered this before an earlier entry: fill from the log.
                metrics.GAP_FILLS.labels(self.view.audience).inc()
                async with self.svc.pool.acquire() as conn:
                    batch += self._frames(await self._history(conn, state.id, entry.seq))
            else:
                batch += self._frames([entry])
        if state.last_seq > self.sent[state.id]:
            # History this change did not carry: a repair (see chat.repair) rings with
            # the state alone. Fill it from the log.
            async with self.svc.pool.acquire() as conn:
                batch += self._frames(await self._history(conn, state.id, state.last_seq))
        return batch

    async def _history(self, conn: Connection, conversation_id: int, up_to: int) -> list[Entry]:
        """The conversation's entries after what was sent, up to ``up_to``, that this
        audience sees, oldest first; moves past them."""
        after = self.sent[conversation_id]
        if up_to <= after:
            return []
        entries = await messages.after(conn, conversation_id, after, up_to - after,
                                       notes=self.view.audience == "agent")
        self.sent[conversation_id] = up_to  # entries this audience does not see count as seen
        return entries

    def _frames(self, entries: Sequence[Entry]) -> list[bytes]:
        """Frames for new entries, advancing the position past each (hidden ones too)."""
        batch = []
        for entry in entries:
            id_ = entry.conversation_id
            self.sent[id_] = max(self.sent[id_], entry.seq)
            if self.view.audience == "agent" or entry.visible_to_visitor:
                batch.append(frames.entry(entry, self.view.audience))
            if entry.kind == ("agent" if self.view.audience == "visitor" else "visitor"):
                self._reach(id_, entry.seq)
        return batch

    def _remember(self, states: Sequence[ConversationState]) -> None:
        if len(self.versions) > MAX_VERSIONS_TRACKED:
            self.versions.clear()  # rare; at worst a stale state shows until the next change
            self.shown.clear()
        for state in states:
            self.versions[state.id] = max(state.version, self.versions.get(state.id, 0))
