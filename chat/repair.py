"""The repair check: a doorbell that never rang still rings, once per process.

The broker may lose a publish: a process can die between commit and publish, or Redis can
drop a message. So every ``interval`` seconds one query per process lists the
conversations that changed lately, and for each one that this process has not heard of
at that version, and that one of its streams shows, it rings the local subscriptions of
the conversation's topics with the state the database holds now. A stream treats it as
any other change: it shows a newer state, and fills history it has not sent from the log
(see :mod:`chat.stream`). A lost publish thus arrives within about one interval, and a
stream that hears nothing costs no query at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from chat import db, metrics
from chat.broker import Broker
from chat.events import conversation_topic, site_topic
from chat.models import Change, ConversationState, is_change
from chat.queries import conversations
from chat.stream import decode

logger = logging.getLogger(__name__)

# How far back each check looks, in intervals: a change committed a little after its
# transaction started (PostgreSQL's now()) is still inside the next check's window.
LOOKBACK = 2


class Repairer:
    """Remembers the newest version of each conversation that reached this process, and
    rings for those the database is ahead on."""

    def __init__(self, broker: Broker, pool: db.Pool, interval: float = 20.0) -> None:
        self.broker = broker
        self.pool = pool
        self.interval = interval
        # conversation -> (newest version heard, when): kept a little longer than a
        # check looks back, so nothing heard inside the window is forgotten.
        self._heard: dict[int, tuple[int, float]] = {}
        broker.listen(self.hear)

    def hear(self, topic: str, payload: bytes) -> None:
        if not is_change(payload) or not topic.startswith(("conv:", "site:")):
            return
        self.saw([decode(payload).conversation])

    def saw(self, states: Iterable[ConversationState]) -> None:
        """Count states a stream read from the database as heard: a conversation that
        changed before this process subscribed to it was not missed."""
        now = time.monotonic()
        for state in states:
            known = self._heard.get(state.id)
            if known is None or state.version >= known[0]:
                self._heard[state.id] = (state.version, now)

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled; a failed check is retried
        at the next one (the database may be briefly unavailable)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except db.OUTAGE_ERRORS as exc:
                logger.warning("The repair check could not read the database (%s); "
                               "retrying in %g s", exc, self.interval)

    async def check(self) -> int:
        """Ring for every recently changed conversation this process missed and shows;
        return how many."""
        self._forget_old()
        if self.broker.subscription_count() == 0:
            return 0
        async with self.pool.acquire() as conn:
            changed = await conversations.changed_within(conn, self.interval * LOOKBACK)
            missed = [id_ for id_, site_id, version in changed
                      if version > self._heard.get(id_, (0, 0.0))[0]
                      and self._shown(id_, site_id)]
            states = await conversations.states(conn, missed) if missed else []
        self.saw(states)
        for state in states:
            payload = Change(state).encode()
            self.broker.ring_locally(conversation_topic(state.id), payload)
            self.broker.ring_locally(site_topic(state.site_id), payload)
        if states:
            metrics.REPAIRS.inc(len(states))
            logger.info("Repaired %d conversation(s) whose publish never arrived", len(states))
        return len(states)

    def _shown(self, conversation_id: int, site_id: int) -> bool:
        return (self.broker.has_subscribers(conversation_topic(conversation_id))
                or self.broker.has_subscribers(site_topic(site_id)))

    def _forget_old(self) -> None:
        oldest = time.monotonic() - self.interval * (LOOKBACK + 1)
        for id_ in [id_ for id_, (_, at) in self._heard.items() if at < oldest]:
            del self._heard[id_]
