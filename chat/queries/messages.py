"""SQL for messages: each conversation's history, which is also its event log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chat.db import Connection
from chat.models import Entry

COLUMNS = "m.conversation_id, m.seq, m.kind, m.body, m.meta, m.client_id, m.created_at"


async def append(
    conn: Connection,
    conversation_id: int,
    *,
    kind: str,
    body: str,
    agent_id: int | None = None,
    author: str | None = None,
    client_id: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Entry:
    """Add an entry with the conversation's next sequence number.

    The caller holds the conversation row's lock (see ``conversations.lock``), so sequence
    order is commit order and there are no gaps.
    """
    row = await conn.fetchrow(
        f"""
        WITH c AS (
            UPDATE conversations
               SET last_seq = last_seq + 1, version = version + 1, updated_at = now(),
                   last_activity_at = CASE WHEN $2 IN ('visitor', 'agent') THEN now()
                                           ELSE last_activity_at END
             WHERE id = $1
         RETURNING id, last_seq
        )
        INSERT INTO messages AS m (conversation_id, seq, kind, body, agent_id, client_id, meta)
        SELECT c.id, c.last_seq, $2, $3, $4, $5, $6::jsonb FROM c
        RETURNING {COLUMNS}
        """,
        conversation_id, kind, body, agent_id, client_id, dict(meta or {}),
    )
    assert row is not None, f"conversation {conversation_id} vanished under its lock"
    return Entry.from_row({**dict(row.items()), "author": author})


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
