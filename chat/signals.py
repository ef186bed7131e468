"""Signals: who is typing or viewing a conversation right now.

A signal is ephemeral (README, "Typing and viewing"): it is never stored and never
replayed, only published to the streams open at that moment, each of which keeps what it
heard in an :class:`Awareness` and forgets it when it expires. A stream therefore expires a
typing indicator by itself when the typist's page goes quiet (closed, offline, asleep): the
page is trusted to say when typing starts, never needed to say when it ends.

What each participant last signalled is also kept in the presence store (:mod:`chat.presence`)
for as long as a stream would keep it, so that a stream that opens or reconnects shows who
is typing or viewing now rather than after their next refresh.

Every signal goes to the site's topic (every dashboard: inbox rows and the agents'
collision line); an agent's typing goes to the conversation's topic (the visitor's streams)
too, as "stopped" when it is a private note.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from chat.broker import Broker
from chat.events import conversation_topic, site_topic
from chat.models import Entry
from chat.presence import PresenceStore

logger = logging.getLogger(__name__)

# here / gone: the visitor's widget is open on a page (refreshed by the server while their
# stream is open, see chat.roster), or no longer.
Kind = Literal["typing", "stopped", "viewing", "left", "here", "gone"]
Side = Literal["visitor", "agent", "note"]  # note: an agent writing a private note
AGENT_KINDS: tuple[Kind, ...] = ("typing", "stopped", "viewing", "left")  # what a page says
PREFIX = b"~"  # what tells a signal's payload from a change's (JSON) and a reload's

# A page refreshes its typing signal every TYPING_REFRESH seconds while keys are pressed and
# says "stopped" TYPING_IDLE seconds after the last one; a stream that hears nothing more
# for TYPING_TTL seconds forgets it. A viewing agent's page refreshes every VIEWING_REFRESH.
TYPING_REFRESH = 2.0
TYPING_IDLE = 5.0
TYPING_TTL = 10.0
# A stream keeps a typing signal TYPING_TTL seconds, so it needs a refresh far less often than
# a page sends one: passing one on every TYPING_RELAY seconds keeps every indicator up with
# room to spare, and spares each dashboard two thirds of its site's typing (see Relay).
TYPING_RELAY = TYPING_TTL / 2
VIEWING_REFRESH = 20.0
VIEWING_TTL = 50.0


@dataclass(frozen=True, slots=True)
class Signal:
    conversation_id: int
    site_id: int
    kind: Kind
    side: Side
    name: str  # who, as the other side sees them
    agent_id: int | None = None
    at: float = field(default_factory=time.time)
    page: str = ""  # here: the page the visitor is on, when it changed ("": as before)

    @property
    def participant(self) -> str:
        """One key per person in a conversation: the visitor typing, the visitor's page, or
        an agent."""
        if self.agent_id is not None:
            return f"agent:{self.agent_id}"
        return "page" if self.kind in ("here", "gone") else "visitor"

    def encode(self) -> bytes:
        return PREFIX + json.dumps([self.conversation_id, self.site_id, self.kind, self.side,
                                    self.name, self.agent_id, self.at, self.page],
                                   separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Signal:
        conversation_id, site_id, kind, side, name, agent_id, at, page = json.loads(payload[1:])
        return cls(conversation_id, site_id, kind, side, name, agent_id, at, page)


def is_signal(payload: bytes) -> bool:
    return payload.startswith(PREFIX)


async def publish(broker: Broker, store: PresenceStore, signal: Signal) -> None:
    """Keep it for streams yet to open, and tell the open ones; a lost signal costs
    nothing (the next refresh repeats it)."""
    await remember(store, signal)
    sends = [(site_topic(signal.site_id), signal)]
    if signal.side != "visitor" and signal.kind in ("typing", "stopped"):
        # A private note is never shown to the visitor: to them its author stopped typing
        # (a reply turned into a note while they watched it being typed).
        to_visitor = signal if signal.side == "agent" else dataclasses.replace(
            signal, kind="stopped", side="agent")
        sends.append((conversation_topic(signal.conversation_id), to_visitor))
    for topic, sent in sends:
        try:
            await broker.publish(topic, sent.encode())
        except Exception:
            logger.warning("Publishing a %s signal to %s failed", signal.kind, topic,
                           exc_info=True)


class Relay:
    """Which typing refreshes this process passes on to the streams: a refresh (a page's
    repeat while keys are pressed) goes out only if nothing of that person typing went out
    here for TYPING_RELAY seconds. A start always goes out, whichever process takes it, so
    typing shows at once; a process that did not see the last one passes the next refresh,
    so the gap between two stays under TYPING_RELAY + TYPING_REFRESH, within TYPING_TTL."""

    def __init__(self, every: float = TYPING_RELAY, limit: int = 10_000) -> None:
        self.every, self.limit = every, limit
        self._passed: dict[tuple[int, str, Side], float] = {}

    def passes(self, signal: Signal, refresh: bool, now: float) -> bool:
        if signal.kind != "typing":
            return True
        key = (signal.conversation_id, signal.participant, signal.side)  # a note is news
        last = self._passed.get(key)
        if refresh and last is not None and now - last < self.every:
            return False
        if len(self._passed) >= self.limit:
            self._passed.clear()  # at worst, a refresh more goes out
        self._passed[key] = now
        return True


async def pass_on(broker: Broker, store: PresenceStore, relay: Relay, signal: Signal,
                  refresh: bool) -> None:
    """What a page signalled: published, or, for a refresh the streams need not hear yet,
    only remembered for streams yet to open."""
    if relay.passes(signal, refresh, time.monotonic()):
        await publish(broker, store, signal)
    else:
        await remember(store, signal)


def scope(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


async def remember(store: PresenceStore, signal: Signal) -> None:
    """Keep what ``signal`` says about its participant for as long as a stream would
    (see :meth:`Awareness.heard`). A sent message is remembered as "stopped" too; a
    visitor who left a page is, as "gone", so that a stream opening just then (which may
    subscribe after the signal) shows when they were last seen."""
    if signal.kind == "left" or (signal.kind == "stopped" and signal.agent_id is None):
        await store.drop(scope(signal.conversation_id), signal.participant)
        return
    ttl = TYPING_TTL if signal.kind == "typing" else VIEWING_TTL
    await store.put(scope(signal.conversation_id), signal.participant, signal.encode(), ttl)


async def recall(store: PresenceStore, conversation_ids: Sequence[int]) -> list[Signal]:
    """What the participants of these conversations last signalled, still in force."""
    found = await store.read([scope(id_) for id_ in conversation_ids])
    return [Signal.decode(value) for entries in found for value in entries.values()]


@dataclass(frozen=True, slots=True)
class Present:
    """Someone doing something in a conversation, as one stream last heard it."""

    name: str
    side: Side
    typing: bool
    agent_id: int | None
    expires: float
    at: float = 0.0  # when last heard of, as a Unix time
    page: str = ""  # the visitor's page, when this is their widget being open


def on_page(present: list[Present]) -> Present | None:
    """The visitor's open widget among who is in a conversation, if it is open."""
    return next((p for p in present if p.side == "visitor" and not p.typing
                 and p.agent_id is None), None)


class Awareness:
    """What one stream heard: who is typing or viewing in each conversation it shows."""

    __slots__ = ("_expiries", "_left", "_present")  # one per open stream: no __dict__

    def __init__(self) -> None:
        self._present: dict[int, dict[str, Present]] = {}
        self._left: dict[int, float] = {}  # when each visitor closed their widget, if heard
        # (expires, conversation, participant) for every Present taken in, refreshed ones
        # too: a stream asks for the soonest expiry each time it waits, and a dashboard
        # hears everyone typing on its site, so walking them all each time is what it cost.
        # An entry whose Present was refreshed or dropped since is skipped when it surfaces.
        self._expiries: list[tuple[float, int, str]] = []

    def left_at(self, conversation_id: int) -> float | None:
        """When the visitor was last seen on a page, if this stream saw them leave."""
        return self._left.get(conversation_id)

    def of(self, conversation_id: int) -> list[Present]:
        return list(self._present.get(conversation_id, {}).values())

    def knows(self, conversation_id: int) -> bool:
        """Whether anything is to be shown of the conversation (someone, or a departure)."""
        return conversation_id in self._present or conversation_id in self._left

    def heard(self, signal: Signal, now: float) -> bool:
        """Take ``signal`` in; True if what the conversation shows changed."""
        people = self._present.setdefault(signal.conversation_id, {})
        before = people.get(signal.participant)
        present: Present | None
        match signal.kind:
            case "typing":
                present = Present(signal.name, signal.side, True, signal.agent_id,
                                  now + TYPING_TTL)
            case "viewing" | "stopped" if signal.agent_id is not None:
                present = Present(signal.name, signal.side, False, signal.agent_id,
                                  now + VIEWING_TTL)
            case "here":
                page = signal.page or (before.page if before else "")
                present = Present(signal.name, "visitor", False, None, now + VIEWING_TTL,
                                  signal.at, page)
            case _:  # left, gone, or a visitor who stopped typing
                present = None
        left = self._left.get(signal.conversation_id)
        if signal.kind == "gone":  # heard even when its "here" was not (it came before us)
            self._left[signal.conversation_id] = signal.at
        elif signal.kind == "here":
            self._left.pop(signal.conversation_id, None)
        if present is None:
            people.pop(signal.participant, None)
        else:
            people[signal.participant] = present
            heapq.heappush(self._expiries,
                           (present.expires, signal.conversation_id, signal.participant))
        if not people:
            del self._present[signal.conversation_id]
        return (_shown(before) != _shown(present)
                or left != self._left.get(signal.conversation_id))

    def arrived(self, entry: Entry) -> bool:
        """A message arrived: its author is no longer typing it (an agent still views the
        conversation). True if what it shows changed."""
        people = self._present.get(entry.conversation_id, {})
        for key, present in people.items():
            if not present.typing:
                continue
            if entry.kind == "visitor" and present.agent_id is None:
                del people[key]
                return True
            if entry.kind in ("agent", "note") and present.name == entry.author:
                people[key] = Present(present.name, present.side, False, present.agent_id,
                                      present.expires)
                return True
        return False

    def expire(self, now: float) -> list[int]:
        """Forget what expired; the conversations whose display changed."""
        changed: dict[int, None] = {}  # in order, once each
        while (soonest := self.next_expiry()) is not None and soonest <= now:
            _, conversation_id, key = heapq.heappop(self._expiries)
            people = self._present[conversation_id]
            if key == "page":  # last seen when last refreshed
                self._left[conversation_id] = people[key].at
            del people[key]
            if not people:
                del self._present[conversation_id]
            changed[conversation_id] = None
        return list(changed)

    def next_expiry(self) -> float | None:
        while self._expiries:
            expires, conversation_id, key = self._expiries[0]
            present = self._present.get(conversation_id, {}).get(key)
            if present is not None and present.expires == expires:
                return expires
            heapq.heappop(self._expiries)  # refreshed or gone since
        return None


def _shown(present: Present | None) -> tuple[str, bool, str] | None:
    return None if present is None else (present.side, present.typing, present.page)
