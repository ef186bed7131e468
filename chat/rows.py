"""Inbox rows, fanned out once per process.

Every dashboard with an inbox shows the same rows: each conversation in its newest version,
marked "typing…" while its visitor types (README, "Live streams"). When each dashboard's
stream heard every change and every visitor's typing of its sites, and coalesced and
rendered them itself, a message cost as many steps as agents were watching: with 100 agents
that was most of the server's time. A :class:`RowFeed` hears each change and each typing
signal once per process, and every tick hands each of its members (the streams of
dashboards with an inbox) the same batch: the rows that changed, in their newest version,
and the typing marks that flipped, joined into one payload. A row is state (design, section
5), so it may wait for the tick; the history and status of the conversations a dashboard has
open never go this way and never wait (see :mod:`chat.stream`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Iterable

from chat import frames, signals
from chat.broker import RESYNC, Broker, Delivery, Item, Subscription
from chat.events import ROWS
from chat.models import Change, ConversationState, is_change
from chat.presence import PresenceStore
from chat.receipts import Recorder
from chat.signals import TYPING_TTL, is_signal
from chat.stream import MAX_VERSIONS_TRACKED, decode, decode_signal

logger = logging.getLogger(__name__)

SPREAD = 0.5  # of a tick, over which a batch reaches the members (see RowFeed._hand_out)


class _Hearing(Subscription):
    """The feed's subscription: what arrives is taken in at once, never queued."""

    def __init__(self, feed: RowFeed) -> None:
        super().__init__(0)
        self._feed = feed

    def offer(self, item: Item) -> None:
        self._feed.hear(item)


class RowFeed:
    """This process's inbox rows, for every dashboard stream that shows an inbox."""

    def __init__(self, broker: Broker, recorder: Recorder | None = None,
                 tick: float = 0.25) -> None:
        self.broker, self.recorder, self.tick = broker, recorder, tick
        self._hearing = _Hearing(self)
        self._members: set[Subscription] = set()
        self._lock = asyncio.Lock()  # joining and leaving subscribe and unsubscribe
        self._versions: dict[int, int] = {}  # the newest version heard, by conversation
        self._pending: dict[int, ConversationState] = {}  # changed since the last batch
        self._typing: dict[int, float] = {}  # conversations whose visitor types: until when
        # (until, conversation) for every typing heard: one refreshed or stopped since is
        # skipped when it surfaces.
        self._expiries: list[tuple[float, int]] = []
        self._marked: set[int] = set()  # rows the pages show as typing now
        self._flipped: set[int] = set()  # rows whose typing may have changed since
        self._batch: asyncio.TimerHandle | None = None  # the next batch, when one is due
        self._recalled: set[int] = set()  # rows whose typing was read from the store

    async def join(self, member: Subscription, topics: Iterable[str]) -> None:
        """Have ``member`` get every batch from now on, of rows on ``topics`` (sites)."""
        async with self._lock:
            self._members.add(member)
            await self.broker.subscribe(self._hearing, topics)

    async def leave(self, member: Subscription) -> None:
        async with self._lock:
            self._members.discard(member)
            if not self._members:
                await self.broker.unsubscribe(self._hearing)
                self._forget()

    def marks(self) -> list[bytes]:
        """The typing marks a freshly rendered inbox lacks (its rows show nobody typing)."""
        return [frames.row_typing(id_, True) for id_ in self._marked]

    async def recall(self, store: PresenceStore, conversation_ids: Iterable[int]) -> None:
        """Take in which of these rows' visitors are typing, from the presence store: typing
        that began before this process subscribed. Once per row for the whole process
        (from then on it hears every signal), not once per dashboard that opens."""
        new = [id_ for id_ in conversation_ids if id_ not in self._recalled]
        if not new:
            return
        if len(self._recalled) > MAX_VERSIONS_TRACKED:
            self._recalled.clear()  # at worst, a row's typing is read again
        self._recalled.update(new)
        now, wall = time.monotonic(), time.time()
        for signal in await signals.recall(store, new):
            until = now - max(0.0, wall - signal.at) + TYPING_TTL
            if (signal.participant == "visitor" and signal.kind == "typing"
                    and self._typing.get(signal.conversation_id, 0.0) < until):
                self._type(signal.conversation_id, until)

    def hear(self, item: Item) -> None:
        if item is RESYNC:  # every member is told too, and renders its inbox again
            self._forget()
            return
        assert isinstance(item, Delivery)
        if is_change(item.payload):
            self._changed(decode(item.payload))
        elif is_signal(item.payload):
            signal = decode_signal(item.payload)
            if signal.participant != "visitor":
                return  # agents and the visitor's page show in open conversations only
            if signal.kind == "typing":
                self._type(signal.conversation_id, time.monotonic() + TYPING_TTL)
            else:
                self._stop(signal.conversation_id)

    def _changed(self, change: Change) -> None:
        state = change.conversation
        if state.version <= self._versions.get(state.id, 0):
            return  # older than a row already heard (the broker does not order topics)
        if len(self._versions) > MAX_VERSIONS_TRACKED:
            self._versions.clear()  # rare; at worst an outdated row shows until the next
        self._versions[state.id] = state.version
        self._pending[state.id] = state
        if any(entry.kind == "visitor" for entry in change.entries):
            self._typing.pop(state.id, None)  # what they typed arrived
        self._soon(self.tick)

    def _type(self, conversation_id: int, until: float) -> None:
        self._typing[conversation_id] = until
        heapq.heappush(self._expiries, (until, conversation_id))
        if conversation_id not in self._marked:
            self._flipped.add(conversation_id)
            self._soon(self.tick)

    def _stop(self, conversation_id: int) -> None:
        if self._typing.pop(conversation_id, None) is not None:
            self._flipped.add(conversation_id)
            self._soon(self.tick)

    def _soon(self, delay: float) -> None:
        """Send a batch within ``delay`` seconds (sooner if one is due sooner)."""
        loop = asyncio.get_running_loop()
        if self._batch is not None:
            if self._batch.when() <= loop.time() + delay:
                return
            self._batch.cancel()
        self._batch = loop.call_later(delay, self._send)

    def _send(self) -> None:
        """One batch to every member: the changed rows, then the marks that flipped."""
        self._batch = None
        self._expire(time.monotonic())
        parts, reached = [], {}
        for id_, state in self._pending.items():
            parts.append(frames.inbox_row(state))
            reached[id_] = state.last_seq
            self._marked.discard(id_)  # a row rendered afresh shows nobody typing
        for id_ in (*self._pending, *self._flipped):
            typing = id_ in self._typing
            if typing != (id_ in self._marked):
                parts.append(frames.row_typing(id_, typing))
                (self._marked.add if typing else self._marked.discard)(id_)
        self._pending.clear()
        self._flipped.clear()
        if parts and self._members:
            self._hand_out(Delivery(ROWS, b"".join(parts)))
            if reached and self.recorder is not None:  # an agent's stream has them now
                self.recorder.delivered("agent", reached)
        if (soonest := self._next_expiry()) is not None:
            self._soon(max(0.0, soonest - time.monotonic()))

    def _hand_out(self, batch: Delivery) -> None:
        """Offer ``batch`` to the members spread over half a tick: woken all at once, a
        hundred dashboards writing the same rows held the loop for tens of milliseconds,
        and every visitor's message waited behind them."""
        members = tuple(self._members)
        loop = asyncio.get_running_loop()
        gap = self.tick * SPREAD / len(members)
        members[0].offer(batch)
        for n, member in enumerate(members[1:], start=1):
            loop.call_later(gap * n, member.offer, batch)

    def _expire(self, now: float) -> None:
        while (soonest := self._next_expiry()) is not None and soonest <= now:
            _, id_ = heapq.heappop(self._expiries)
            del self._typing[id_]
            self._flipped.add(id_)

    def _next_expiry(self) -> float | None:
        while self._expiries:
            until, id_ = self._expiries[0]
            if self._typing.get(id_) == until:
                return until
            heapq.heappop(self._expiries)  # refreshed or stopped since
        return None

    def _forget(self) -> None:
        """Start afresh: members render their inbox again, showing nobody typing."""
        self._pending.clear()
        self._marked.clear()
        self._recalled.clear()  # what it hears no longer covers everything
        self._flipped.update(self._typing)
