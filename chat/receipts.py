"""Receipts: how far each side of a conversation has received and read its history.

Each side has two cursors, sequences of the conversation's history: *delivered* (the
newest entry written to one of that side's open streams: a widget, or a dashboard's
conversation view or inbox) and *read* (the newest entry in a view that was visible). The
visitor's cursors mark the agents' messages, the team's (whichever agent got there first)
the visitor's, so each side's own messages show as Sent, Delivered or Read (README,
"Receipts"). Cursors are stored, each only moving forward, and published after each write
to the streams of the side whose messages they mark; a stream that (re)connects reads them.

Deliveries are noticed as streams write, many per message when many dashboards are open, so
a :class:`Recorder` gathers them and writes them together, at most every ``FLUSH`` seconds,
in one statement; what the process knows is stored already is not written again.
"""

from __future__ import annotations

import asyncio
import logging

from chat import db
from chat.broker import Broker
from chat.db import Pool
from chat.events import conversation_topic, site_topic
from chat.models import RECEIPTS_PREFIX, Receipts, Side
from chat.queries import receipts as queries

logger = logging.getLogger(__name__)

FLUSH = 0.1
MAX_KNOWN = 10_000


def is_receipts(payload: bytes) -> bool:
    return payload.startswith(RECEIPTS_PREFIX)


class Recorder:
    """This process's receipts on their way to the database and the other side."""

    def __init__(self, pool: Pool, broker: Broker, every: float = FLUSH) -> None:
        self.pool = pool
        self.broker = broker
        self.every = every
        self._pending: dict[int, Receipts] = {}
        self._sides: dict[int, set[Side]] = {}  # whose cursors moved, by conversation
        self._known: dict[int, Receipts] = {}  # what is stored, as last written from here
        # The newest delivery gathered or stored, by side and conversation: every dashboard
        # reports each inbox row it wrote, so most reports repeat another stream's.
        self._taken: dict[tuple[Side, int], int] = {}
        self._due = asyncio.Event()

    def delivered(self, side: Side, cursors: dict[int, int]) -> None:
        """A stream of ``side`` wrote these conversations' entries up to these sequences."""
        for conversation_id, seq in cursors.items():
            if self._taken.get((side, conversation_id), -1) >= seq:
                continue  # another stream of this side got there first: a lookup, no more
            self._taken[side, conversation_id] = seq
            self._advance(side, Receipts.of(conversation_id, side, delivered=seq))

    def read(self, side: Side, conversation_id: int, seq: int) -> None:
        self._advance(side, Receipts.of(conversation_id, side, delivered=seq, read=seq))

    def _advance(self, side: Side, receipts: Receipts) -> None:
        id_ = receipts.conversation_id
        known = self._known.get(id_)
        if known is not None and known.covers(receipts):
            return
        pending = self._pending.get(id_)
        self._pending[id_] = receipts if pending is None else pending.merge(receipts)
        self._sides.setdefault(id_, set()).add(side)
        self._due.set()

    async def run(self) -> None:
        while True:
            await self._due.wait()
            await asyncio.sleep(self.every)  # what else arrives meanwhile goes in one write
            self._due.clear()
            try:
                await self.flush()
            except db.OUTAGE_ERRORS as exc:
                logger.warning("Receipts were not recorded: the database is unavailable (%s); "
                               "the next ones will catch up", exc)
            except Exception:
                logger.exception("Recording receipts failed; the next ones will catch up")

    async def close(self) -> None:
        """Write what is still gathered, if the database lets us."""
        try:
            await self.flush()
        except Exception:
            logger.warning("Receipts gathered at shut-down were not recorded", exc_info=True)

    async def flush(self) -> None:
        """Write what was gathered, then tell the streams of each side it concerns."""
        pending, sides = self._pending, self._sides
        self._pending, self._sides = {}, {}
        if not pending:
            return
        try:
            async with self.pool.acquire() as conn:
                written = await queries.advance(conn, list(pending.values()))
        except BaseException:
            self._taken.clear()  # what was gathered is lost: the next deliveries gather it
            raise
        if len(self._known) > MAX_KNOWN:
            self._known.clear()  # rare; at worst a few cursors are written again
            self._taken.clear()
        for receipts, site_id in written:
            self._known[receipts.conversation_id] = receipts
            for side in sides[receipts.conversation_id]:
                # The visitor's cursors mark the agents' messages, and the other way round.
                topic = (site_topic(site_id) if side == "visitor"
                         else conversation_topic(receipts.conversation_id))
                try:
                    await self.broker.publish(topic, receipts.encode())
                except Exception:
                    logger.warning("Publishing receipts to %s failed", topic, exc_info=True)
