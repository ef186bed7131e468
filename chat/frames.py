"""SSE frames for each audience, rendered once per process however many streams send them.

History is immutable and every state carries a version, so a frame is fully identified by
what it shows: (audience, conversation, sequence) or (audience, conversation, version).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal

from chat.events import LINE_END, Cursor, frame
from chat.models import ConversationState, Entry, Receipts
from chat.roster import Team
from chat.signals import Present
from chat.templating import render

Audience = Literal["visitor", "agent"]
RETRY_MS = 2000

# A reload with no data: everything on the page (signed out, the stream's state can no
# longer be shown). With data: only what shows the conversations it names (see reload()).
RELOAD = frame("", event="reload", retry=RETRY_MS)
# htmx 4 ignores a block with only ``retry:``; a named event carries it.
HELLO = frame("", event="hello", retry=RETRY_MS)


def reload(conversation_ids: Sequence[int] = ()) -> bytes:
    """Ask pages to reload what shows ``conversation_ids`` (comma-separated), or all."""
    if not conversation_ids:
        return RELOAD
    return frame(",".join(map(str, conversation_ids)), event="reload", retry=RETRY_MS)


class FrameCache:
    """A small LRU of rendered frames."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._frames: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self.renders = 0  # how many times a frame was actually rendered (for tests)

    def clear(self) -> None:
        self._frames.clear()

    def get(self, key: tuple[object, ...], make: Callable[[], bytes]) -> bytes:
        found = self._frames.get(key)
        if found is not None:
            self._frames.move_to_end(key)
            return found
        self.renders += 1
        made = self._frames[key] = make()
        if len(self._frames) > self.size:
            self._frames.popitem(last=False)
        return made


cache = FrameCache()


def entry(item: Entry, audience: Audience) -> bytes:
    """A history entry, with its cursor as the SSE id."""
    key = ("entry", audience, item.conversation_id, item.seq)
    cursor = str(Cursor(item.conversation_id, item.seq))
    return cache.get(key, lambda: frame(render("sse/entry.html", entry=item, audience=audience),
                                        id=cursor))


def status(state: ConversationState, audience: Audience) -> bytes:
    """A conversation's status banner or header; no id, so the cursor stays put.

    Keyed by what it shows, not by version: most changes are messages, which leave the
    status as it was, and then every stream finds the very frame it showed last."""
    key = ("status", audience, state.id, state.status, state.assignee_id, state.assignee_name)
    return cache.get(key, lambda: frame(render("sse/status.html", conversation=state,
                                               audience=audience)))


def inbox_row(state: ConversationState) -> bytes:
    """One inbox row, on one ``data:`` line: every dashboard gets each changed row, so its
    size counts (the template's indentation and line breaks are half of it)."""
    key = ("inbox_row", state.id, state.version)
    return cache.get(key, lambda: frame(one_line(render("sse/inbox_row.html",
                                                        conversation=state))))


def one_line(html: str) -> str:
    """``html`` with each line break and the indentation around it made one space, which
    HTML shows the same way (safe only where no text is preformatted, as in a row)."""
    return " ".join(filter(None, (line.strip() for line in LINE_END.split(html))))


def inbox(states: Sequence[ConversationState]) -> bytes:
    """The whole inbox, re-rendered on (re)connect; too varied to be worth caching."""
    return frame(render("sse/inbox.html", conversations=states))


def awareness(conversation_id: int, audience: Audience, present: Sequence[Present]) -> bytes:
    """Who is typing (and, for agents, viewing) in a conversation: its line under the
    history, the visitor first, then agents by name. Keyed by what it shows, which is the
    same for every stream of an audience."""
    people = tuple(sorted(((p.name, p.side, p.typing) for p in present),
                          key=lambda person: (person[1] != "visitor", person)))
    key = ("awareness", audience, conversation_id, people)
    return cache.get(key, lambda: frame(one_line(render(
        "sse/awareness.html", conversation_id=conversation_id, audience=audience,
        present=people))))


def row_typing(conversation_id: int, typing: bool) -> bytes:
    """The "typing…" mark on an inbox row."""
    key = ("row_typing", conversation_id, typing)
    return cache.get(key, lambda: frame(one_line(render(
        "sse/row_typing.html", conversation_id=conversation_id, typing=typing))))


def receipts(cursors: Receipts, audience: Audience) -> bytes:
    """How far the other side got with ``audience``'s messages, and what ``audience`` has
    read (for unread counts); the page marks each message from it."""
    delivered, read = cursors.marks(audience)
    seen = cursors.visitor_read if audience == "visitor" else cursors.agent_read
    key = ("receipts", audience, cursors.conversation_id, delivered, read, seen)
    return cache.get(key, lambda: frame(one_line(render(
        "sse/receipts.html", conversation_id=cursors.conversation_id, audience=audience,
        delivered=delivered, read=read, seen=seen))))


def team(team: Team, audience: Audience, agent_id: int | None = None,
         forced_away: bool = False) -> bytes:
    """For the widget, whether the team is online (``forced_away``: the site says it is
    away); for a dashboard, who is online or away, and the agent's own status."""
    online = team.online and not forced_away
    key = ("team", audience, online if audience == "visitor" else (team, agent_id))
    return cache.get(key, lambda: frame(one_line(render(
        "sse/team.html", audience=audience, team=team, agent_id=agent_id, online=online))))


def visitor_presence(conversation_id: int, online: bool, last_seen: float | None,
                     page: str) -> bytes:
    """The visitor panel's "Online now" or "Last seen …", and their page when it changed."""
    seen = None if last_seen is None else datetime.fromtimestamp(last_seen, UTC)
    return frame(one_line(render("sse/visitor_presence.html", conversation_id=conversation_id,
                                 online=online, last_seen=seen, page=page)))
