"""Topics, publishing, and SSE framing: how a committed change reaches the streams.

Every change is published after its transaction commits, to the conversation's topic (the
visitor's stream) and to its site's topic (agents' inboxes). Postgres is the log and the
broker only the doorbell: a lost publish costs latency, never data, because streams fill
gaps from the database (see :mod:`chat.stream`) and each process rings for publishes that
never arrived (see :mod:`chat.repair`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from chat.broker import Broker
from chat.models import Change

logger = logging.getLogger(__name__)


def conversation_topic(conversation_id: int) -> str:
    return f"conv:{conversation_id}"


def site_topic(site_id: int) -> str:
    return f"site:{site_id}"


def agent_topic(agent_id: int) -> str:
    """An agent's own topic: tells their open pages to reload (signed out, deactivated)."""
    return f"agent:{agent_id}"


def session_topic(token_hash: bytes) -> str:
    """A sign-in session's own topic: its pages reload when it ends (signed out, or
    signed out elsewhere by a password change). Named by a prefix of the token's hash,
    which reveals nothing about the token."""
    return f"session:{token_hash[:8].hex()}"


RELOAD = b"reload"  # a control payload: not a Change
# Not a topic anyone publishes to: what a dashboard's stream gets from its process's
# inbox rows (see chat.rows), each batch ready to write.
ROWS = "rows"


async def publish(broker: Broker, change: Change) -> None:
    """Ring the doorbell for a committed change; never raises (the data is already safe)."""
    payload = change.encode()
    conversation = change.conversation
    for topic in (conversation_topic(conversation.id), site_topic(conversation.site_id)):
        try:
            await broker.publish(topic, payload)
        except Exception:
            logger.exception("Publishing to %s failed; streams will catch up from the database",
                             topic)


async def publish_reload(broker: Broker, topic: str) -> None:
    """Make every stream on ``topic`` end with a reload event (after a commit, like changes)."""
    try:
        await broker.publish(topic, RELOAD)
    except Exception:
        logger.exception("Publishing a reload to %s failed", topic)


CURSOR = re.compile(r"([0-9]{1,18})-([0-9]{1,18})")  # ids and sequences fit in a bigint


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in one conversation's history, carried in SSE ``id:`` lines as ``C-S``."""

    conversation_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.conversation_id}-{self.seq}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor | None:
        """The cursor in ``value``, or None when it is absent or malformed."""
        # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
        match = CURSOR.fullmatch(value.strip()) if value else None
        return cls(int(match[1]), int(match[2])) if match else None


LINE_END = re.compile(r"\r\n|\r|\n")


def frame(data: str = "", *, event: str | None = None, id: str | None = None,
          retry: int | None = None) -> bytes:
    """One SSE message. Every line of ``data`` gets its own ``data:`` line."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    # Only the line ends SSE knows: str.splitlines() would also split on U+2028 and the
    # like, which the browser then joins back as "\n", changing the text.
    lines.extend(f"data: {line}" for line in LINE_END.split(data.rstrip("\r\n")))
    return ("\n".join(lines) + "\n\n").encode()
