"""The long-lived resources a running app shares: settings, database pool, broker, presence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from chat.broker import Broker
from chat.config import Settings
from chat.db import Pool
from chat.presence import MemoryPresence, PresenceStore
from chat.ratelimit import RateLimiter
from chat.signals import Relay
from chat.slots import StreamSlots
from chat.web.sse import Watchdog

if TYPE_CHECKING:  # chat.repair needs chat.stream, which needs this module
    from chat.receipts import Recorder
    from chat.repair import Repairer
    from chat.roster import Roster
    from chat.rows import RowFeed


@dataclass
class Services:
    settings: Settings
    pool: Pool
    broker: Broker
    limiter: RateLimiter
    presence: PresenceStore = field(default_factory=MemoryPresence)
    streams: StreamSlots = field(default_factory=StreamSlots)
    watchdog: Watchdog = field(default_factory=Watchdog)  # of the open SSE responses
    repairer: Repairer | None = None  # what this process heard (see chat.repair)
    roster: Roster | None = None  # who is here (see chat.roster)
    recorder: Recorder | None = None  # what was delivered and read (see chat.receipts)
    relay: Relay = field(default_factory=Relay)  # which typing refreshes go out
    rows: RowFeed = field(init=False)  # the inbox rows every dashboard shows (chat.rows)

    def __post_init__(self) -> None:
        from chat.rows import RowFeed  # chat.rows needs chat.stream, which needs this module

        self.rows = RowFeed(self.broker, self.recorder)


def services(conn: HTTPConnection) -> Services:
    """The :class:`Services` of the app serving this request."""
    found: Services = conn.app.state.services
    return found
