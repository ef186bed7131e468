"""SQL for messages: each conversation's history, which is also its event log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chat.db import Connection
from chat.models import ConversationState, Entry
from chat.queries import conversations

COLUMNS = "m.conversation_id, m.seq, m.kind, m.body, m.meta, m.client_id, m.created_at"


PREVIEW_LENGTH = 280


async def append(
    conn: Connection,
    conversation_id: int,
    *,
    kind: str,
    body: str,
    statuses: Sequence[str],
    agent_id: int | None = None,
    author: str | None = None,
    client_id: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[Entry, ConversationState] | None:
    """Add an entry with the conversation's next sequence number; return it with the
    conversation's new state. One statement, so it is atomic without a transaction.

    None, with nothing written, when the conversation is missing, its status is not one
    of ``statuses``, or ``client_id`` was used in it before (a retried send).

    The row lock orders writers: sequence order is commit order, with no gaps. After
    waiting for the lock, ``FOR UPDATE`` (and the UPDATE) see the row as the previous
    holder committed it, and ``ON CONFLICT`` sees its committed entry.
    """
    row = await conn.fetchrow(
        f"""
        WITH locked AS (
            SELECT id, last_seq FROM conversations
             WHERE id = $1 AND status = ANY($7::text[])
               FOR UPDATE
        ), entry AS (
            INSERT INTO messages AS m
                   (conversation_id, seq, kind, body, agent_id, client_id, meta)
            SELECT locked.id, locked.last_seq + 1, $2, $3, $4, $5, $6 FROM locked
                ON CONFLICT (conversation_id, client_id) DO NOTHING
            RETURNING {COLUMNS}
        ), c AS (
            UPDATE conversations c
               SET last_seq = entry.seq, version = c.version + 1, updated_at = now(),
                   last_activity_at = CASE WHEN entry.kind IN ('visitor', 'agent')
                                           THEN now() ELSE c.last_activity_at END,
                   preview = CASE WHEN entry.kind IN ('visitor', 'agent')
                                  THEN left(entry.body, {PREVIEW_LENGTH}) ELSE c.preview END,
                   visitor_messages = c.visitor_messages + (entry.kind = 'visitor')::int
              FROM entry
             WHERE c.id = entry.conversation_id
         RETURNING c.*
        )
        SELECT entry.seq AS entry_seq, entry.kind AS entry_kind, entry.body AS entry_body,
               entry.meta AS entry_meta, entry.client_id AS entry_client_id,
               entry.created_at AS entry_created_at, {conversations.STATE_COLUMNS}
          FROM entry, c {conversations.STATE_JOINS}
        """,
        conversation_id, kind, body, agent_id, client_id, dict(meta or {}), list(statuses),
    )
    if row is None:
        return None
    entry = Entry(conversation_id=conversation_id, seq=row["entry_seq"], kind=row["entry_kind"],
                  body=row["entry_body"], created_at=row["entry_created_at"], author=author,
                  client_id=row["entry_client_id"], meta=row["entry_meta"] or {})
    return entry, ConversationState.from_row(row)


async def by_client_id(conn: Connection, conversation_id: int, client_id: str) -> Entry | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS}, a.name AS author FROM messages m "
        "LEFT JOIN agents a ON a.id = m.agent_id "
        "WHERE m.conversation_id = $1 AND m.client_id = $2",
        conversation_id, client_id,
    )
    return Entry.from_row(row) if row else None


async def after(
    conn: Connection, conversation_id: int, after_seq: int, limit: int, *, notes: bool
) -> list[Entry]:
    """Up to ``limit`` entries with a sequence number above ``after_seq``, oldest first."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS}, a.name AS author FROM messages m "
        "LEFT JOIN agents a ON a.id = m.agent_id "
        "WHERE m.conversation_id = $1 AND m.seq > $2 AND ($4 OR m.kind <> 'note') "
        "ORDER BY m.seq LIMIT $3",
        conversation_id, after_seq, limit, notes,
    )
    return [Entry.from_row(r) for r in rows]


async def before(
    conn: Connection, conversation_id: int, before_seq: int | None, limit: int, *, notes: bool
) -> list[Entry]:
    """Up to ``limit`` entries just below ``before_seq`` (or the newest), oldest first."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS}, a.name AS author FROM messages m "
        "LEFT JOIN agents a ON a.id = m.agent_id "
        "WHERE m.conversation_id = $1 AND ($2::bigint IS NULL OR m.seq < $2) "
        "AND ($4 OR m.kind <> 'note') ORDER BY m.seq DESC LIMIT $3",
        conversation_id, before_seq, limit, notes,
    )
    return [Entry.from_row(r) for r in reversed(rows)]


async def by_visitor_client_id(conn: Connection, visitor_id: int, client_id: str) -> Entry | None:
    """A visitor's message with this idempotency key, in any of their conversations."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS}, NULL AS author FROM messages m "
        "JOIN conversations c ON c.id = m.conversation_id "
        "WHERE c.visitor_id = $1 AND m.client_id = $2 AND m.kind = 'visitor' "
        "ORDER BY m.id LIMIT 1",
        visitor_id, client_id,
    )
    return Entry.from_row(row) if row else None
