"""The shapes that travel: history entries, conversation state, the change an action publishes
and receipts.

Each is built from a database row, rendered by templates, and carried through the broker as
JSON, so that a stream in another process can render it without asking the database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from asyncpg import Record

Status = Literal["waiting", "active", "closed"]
EntryKind = Literal["visitor", "agent", "note", "activity"]
STATUSES: tuple[Status, ...] = ("waiting", "active", "closed")
OPEN: tuple[Status, ...] = ("waiting", "active")  # not closed: what agents still work on
Row: TypeAlias = Record | Mapping[str, Any]
Side = Literal["visitor", "agent"]  # a conversation's two sides: its visitor, its team
# What tells receipts from a change (JSON), a signal, the team's presence and a reload.
RECEIPTS_PREFIX = b"%"


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a conversation's history: a message, a private note or an activity line."""

    conversation_id: int
    seq: int
    kind: EntryKind
    body: str
    created_at: datetime
    author: str | None = None  # the agent's name, for agent messages, notes and activity
    client_id: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dom_id(self) -> str:
        """Stable across renders, so a re-delivered entry replaces itself instead of doubling."""
        return f"entry-{self.conversation_id}-{self.seq}"

    @property
    def visible_to_visitor(self) -> bool:
        return self.kind != "note"

    @classmethod
    def from_row(cls, row: Row) -> Entry:
        return cls(
            conversation_id=row["conversation_id"], seq=row["seq"], kind=row["kind"],
            body=row["body"], created_at=row["created_at"], author=row.get("author"),
            client_id=row["client_id"], meta=row["meta"] or {},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id, "seq": self.seq, "kind": self.kind,
            "body": self.body, "created_at": self.created_at.isoformat(), "author": self.author,
            "client_id": self.client_id, "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        return cls(**{**data, "created_at": datetime.fromisoformat(data["created_at"])})


@dataclass(frozen=True, slots=True)
class ConversationState:
    """The current value of a conversation: what inbox rows and status banners show."""

    id: int
    site_id: int
    visitor_id: int
    status: Status
    assignee_id: int | None
    assignee_name: str | None
    visitor_name: str | None
    visitor_email: str | None
    preview: str | None
    last_seq: int
    version: int
    visitor_messages: int
    created_at: datetime
    last_activity_at: datetime

    @property
    def dom_id(self) -> str:
        return f"conversation-{self.id}"

    @property
    def visitor_label(self) -> str:
        """The visitor's name, else their email, else a friendly placeholder."""
        return self.visitor_name or self.visitor_email or f"Visitor #{self.visitor_id}"

    @classmethod
    def from_row(cls, row: Row) -> ConversationState:
        return cls(**{name: row[name] for name in cls.__slots__})

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["created_at"] = self.created_at.isoformat()
        data["last_activity_at"] = self.last_activity_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConversationState:
        return cls(**{
            **data,
            "created_at": datetime.fromisoformat(data["created_at"]),
            "last_activity_at": datetime.fromisoformat(data["last_activity_at"]),
        })


@dataclass(frozen=True, slots=True)
class Change:
    """What one committed action did to one conversation: its new state and new entries."""

    conversation: ConversationState
    entries: tuple[Entry, ...] = ()
    published_at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        return json.dumps({
            "conversation": self.conversation.to_json(),
            "entries": [e.to_json() for e in self.entries],
            "published_at": self.published_at,
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Change:
        data = json.loads(payload)
        return cls(
            conversation=ConversationState.from_json(data["conversation"]),
            entries=tuple(Entry.from_json(e) for e in data["entries"]),
            published_at=data["published_at"],
        )


def is_change(payload: bytes) -> bool:
    """Whether a published payload is a :class:`Change` (JSON), not one of the others:
    a signal, the team's presence, receipts or a reload."""
    return payload.startswith(b"{")


@dataclass(frozen=True, slots=True)
class Agent:
    """A signed-in agent: who is acting."""

    id: int
    name: str
    email: str
    role: Literal["admin", "agent"]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


AlertLevel = Literal["all", "mine", "new", "none"]
# Which new visitor messages alert an agent, as the dashboard offers them.
ALERT_LEVELS: dict[AlertLevel, str] = {
    "all": "All messages",
    "mine": "Mine and unassigned",
    "new": "New conversations only",
    "none": "None",
}


@dataclass(frozen=True, slots=True)
class Alerts:
    """An agent's alert preference: what alerts them (the dashboard decides from it) and
    whether with a sound."""

    level: AlertLevel = "mine"
    sound: bool = True


@dataclass(frozen=True, slots=True)
class Receipts:
    """How far each side of a conversation received and read its history (see
    :mod:`chat.receipts`)."""

    conversation_id: int
    visitor_delivered: int = 0
    visitor_read: int = 0
    agent_delivered: int = 0
    agent_read: int = 0

    @classmethod
    def of(cls, conversation_id: int, side: Side, *, delivered: int, read: int = 0) -> Receipts:
        """One side's cursors (what is read was delivered)."""
        delivered = max(delivered, read)
        if side == "visitor":
            return cls(conversation_id, visitor_delivered=delivered, visitor_read=read)
        return cls(conversation_id, agent_delivered=delivered, agent_read=read)

    def marks(self, audience: Side) -> tuple[int, int]:
        """(delivered, read) of the messages ``audience`` sends: the other side's cursors."""
        if audience == "visitor":
            return self.agent_delivered, self.agent_read
        return self.visitor_delivered, self.visitor_read

    def merge(self, other: Receipts) -> Receipts:
        return Receipts(self.conversation_id,
                        *(max(a, b) for a, b in zip(self.cursors, other.cursors, strict=True)))

    def covers(self, other: Receipts) -> bool:
        return all(a >= b for a, b in zip(self.cursors, other.cursors, strict=True))

    @property
    def cursors(self) -> tuple[int, int, int, int]:
        return self.visitor_delivered, self.visitor_read, self.agent_delivered, self.agent_read

    def encode(self) -> bytes:
        return RECEIPTS_PREFIX + json.dumps([self.conversation_id, *self.cursors]).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Receipts:
        return cls(*json.loads(payload[1:]))

    @classmethod
    def from_row(cls, row: Row) -> Receipts:
        return cls(row["conversation_id"], row["visitor_delivered"], row["visitor_read"],
                   row["agent_delivered"], row["agent_read"])
