"""Who is here: agents online, away or offline, and visitors with the widget open.

Presence is decided on the server, from the streams it holds, never from page timers,
which browsers throttle in background tabs (README, "Presence"):

- an agent is **online** while a dashboard stream of theirs is open somewhere and one of
  their tabs was visible within ``away_after`` seconds (a visible tab says so when it shows,
  and again every third of that time); **away** when all their tabs stayed hidden that long,
  or they set themselves away; **offline** once no stream of theirs was open for
  ``presence_ttl`` seconds, so a reload or a dropped connection changes nothing;
- a visitor is on a page while a widget stream of theirs is open: dashboards hear a "here"
  signal when it opens and every ``VIEWING_REFRESH`` seconds, and "gone" when it closes (or
  the refreshes stop, and their streams forget them).

Each process refreshes the entries of the streams it holds in the presence store every
tick (one write per agent streaming here); and every process reads the team's entries each
tick and, when the team changed, tells its own streams (the store is shared, so every
process sees the same change without publishing it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chat import signals
from chat.broker import Broker
from chat.db import Pool
from chat.presence import PresenceStore
from chat.queries import visitors
from chat.signals import VIEWING_REFRESH, Signal

logger = logging.getLogger(__name__)

Status = Literal["online", "away", "offline"]
TEAM_TOPIC = "team"  # rung in each process by its own roster, never published
TEAM_PREFIX = b"@"  # what tells the team's payload from a change's and a signal's
SCOPE = "agents"
AWAY_BY_HAND_TTL = 12 * 3600.0  # an agent away by hand stays so for a working day at most


@dataclass(frozen=True, slots=True)
class Team:
    """The agents online or away, as (id, name, status) by name; the others are offline."""

    agents: tuple[tuple[int, str, Status], ...] = ()

    def status(self, agent_id: int) -> Status:
        return next((status for id_, _, status in self.agents if id_ == agent_id), "offline")

    @property
    def online(self) -> bool:
        return any(status == "online" for _, _, status in self.agents)

    def encode(self) -> bytes:
        return TEAM_PREFIX + json.dumps(self.agents).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Team:
        return cls(tuple((id_, name, status) for id_, name, status in json.loads(payload[1:])))


def is_team(payload: bytes) -> bool:
    return payload.startswith(TEAM_PREFIX)


def team_of(entries: Mapping[str, bytes]) -> Team:
    """The statuses that the store's entries say (see the module's docstring)."""
    agents: list[tuple[int, str, Status]] = []
    for key, name in entries.items():
        kind, _, id_ = key.partition(":")
        if kind == "open":
            here = f"here:{id_}" in entries and f"away:{id_}" not in entries
            agents.append((int(id_), name.decode(), "online" if here else "away"))
    return Team(tuple(sorted(agents, key=lambda agent: (agent[1], agent[0]))))


class Roster:
    """This process's open streams, kept in the presence store, and the team's presence."""

    def __init__(self, store: PresenceStore, broker: Broker, pool: Pool, *,
                 ttl: float = 30.0, away_after: float = 300.0) -> None:
        self.store = store
        self.broker = broker
        self.pool = pool
        self.ttl = ttl
        self.away_after = away_after
        self.team = Team()
        self._agents: Counter[int] = Counter()  # open dashboard streams, by agent
        self._names: dict[int, str] = {}
        self._visitors: Counter[tuple[int, int]] = Counter()  # by (visitor, conversation)
        self._signs: dict[tuple[int, int], Signal] = {}  # what says they are here
        self._refreshed = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def tick(self) -> float:
        """Often enough that an entry is refreshed three times within its TTL."""
        return min(5.0, self.ttl / 3)

    @property
    def here_refresh(self) -> float:
        """How often a visible dashboard tab says so."""
        return min(60.0, self.away_after / 3)

    def agent_opened(self, agent_id: int, name: str) -> Callable[[], None]:
        """A dashboard stream of ``agent_id`` opened here; call the result when it closes."""
        self._agents[agent_id] += 1
        self._names[agent_id] = name
        if self._agents[agent_id] == 1:
            self._spawn(self.refresh())

        def closed() -> None:
            self._agents[agent_id] -= 1
            if self._agents[agent_id] <= 0:
                del self._agents[agent_id]  # its entry expires after the TTL
                self._names.pop(agent_id, None)
        return closed

    def visitor_opened(self, visitor_id: int, sign: Signal) -> Callable[[], None]:
        """A widget stream showing ``sign.conversation_id`` opened; call the result when
        it closes."""
        key = (visitor_id, sign.conversation_id)
        self._visitors[key] += 1
        if self._visitors[key] == 1:
            self._signs[key] = sign
            self._spawn(signals.publish(self.broker, self.store, sign))

        def closed() -> None:
            self._visitors[key] -= 1
            if self._visitors[key] <= 0:
                del self._visitors[key]
                gone = Signal(sign.conversation_id, sign.site_id, "gone", "visitor", sign.name)
                self._signs.pop(key, None)
                self._spawn(self._visitor_left(visitor_id, gone))
        return closed

    async def _visitor_left(self, visitor_id: int, gone: Signal) -> None:
        await signals.publish(self.broker, self.store, gone)
        async with self.pool.acquire() as conn:
            await visitors.seen(conn, visitor_id)

    async def here(self, agent_id: int) -> None:
        """One of the agent's tabs is visible."""
        await self.store.put(SCOPE, f"here:{agent_id}", b"", self.away_after)
        await self.refresh()

    async def set_away(self, agent_id: int, away: bool) -> None:
        """Away by hand, or back (then a visible tab makes them online)."""
        if away:
            await self.store.put(SCOPE, f"away:{agent_id}", b"", AWAY_BY_HAND_TTL)
        else:
            await self.store.drop(SCOPE, f"away:{agent_id}")
            await self.store.put(SCOPE, f"here:{agent_id}", b"", self.away_after)
        await self.refresh()

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
                if time.monotonic() - self._refreshed >= VIEWING_REFRESH:
                    self._refreshed = time.monotonic()
                    await self._say_visitors_are_here()
            except Exception:
                logger.exception("Refreshing presence failed; trying again in %.0f s",
                                 self.tick)
            await asyncio.sleep(self.tick)

    async def _say_visitors_are_here(self) -> None:
        """Refresh each open widget's "here" before streams forget it, spread over half a
        tick: a thousand at once held the process for a third of a second, and then every
        dashboard took them all in one go."""
        signs = list(self._signs.values())
        gap = self.tick / 2 / max(1, len(signs))
        for sign in signs:
            await signals.publish(self.broker, self.store,
                                  dataclasses.replace(sign, at=time.time()))
            await asyncio.sleep(gap)

    async def refresh(self) -> None:
        """Keep this process's agents' entries alive, then read the team: tell this
        process's streams if it changed."""
        for agent_id, name in list(self._names.items()):
            await self.store.put(SCOPE, f"open:{agent_id}", name.encode(), self.ttl)
        [entries] = await self.store.read([SCOPE])
        team = team_of(entries)
        if team != self.team:
            self.team = team
            self.broker.ring_locally(TEAM_TOPIC, team.encode())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("Presence update failed: %s", task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
