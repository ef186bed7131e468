"""SQL for conversations and their current state."""

from __future__ import annotations

from collections.abc import Collection

from asyncpg import Record

from chat.db import Connection
from chat.models import ConversationState
from chat.tabs import Inbox

# One shape for every reader of state (inbox rows, banners, published changes), so a
# row rendered from a broker payload is identical to one rendered from the database.
# ``c`` is the conversation; messages.append selects the same columns.
STATE_COLUMNS = """
       c.id, c.site_id, c.visitor_id, c.status, c.assignee_id, a.name AS assignee_name,
       v.name AS visitor_name, v.email AS visitor_email, c.preview, c.last_seq, c.version,
       c.visitor_messages, c.created_at, c.last_activity_at
"""
STATE_JOINS = """
  JOIN visitors v ON v.id = c.visitor_id
  LEFT JOIN agents a ON a.id = c.assignee_id
"""
STATE = f"SELECT {STATE_COLUMNS} FROM conversations c {STATE_JOINS}"


async def insert(conn: Connection, *, site_id: int, visitor_id: int) -> int:
    conversation_id: int = await conn.fetchval(
        "INSERT INTO conversations (site_id, visitor_id) VALUES ($1, $2) RETURNING id",
        site_id, visitor_id,
    )
    return conversation_id


async def lock(conn: Connection, conversation_id: int) -> Record | None:
    """The row, locked until the transaction ends: every history write goes through here.

    Anything that must see the writes of whoever held the lock before (such as a retried
    send's first attempt) must be a later statement: this one's snapshot predates the wait.
    """
    row: Record | None = await conn.fetchrow(
        "SELECT id, site_id, visitor_id, status, assignee_id FROM conversations "
        "WHERE id = $1 FOR UPDATE",
        conversation_id,
    )
    return row


async def update(
    conn: Connection, conversation_id: int, *, status: str, assignee_id: int | None
) -> None:
    await conn.execute(
        """
        UPDATE conversations
           SET status = $2, assignee_id = $3, version = version + 1, updated_at = now(),
               closed_at = CASE WHEN $2 = 'closed' THEN now() END
         WHERE id = $1
        """,
        conversation_id, status, assignee_id,
    )


async def state(conn: Connection, conversation_id: int) -> ConversationState | None:
    row = await conn.fetchrow(STATE + " WHERE c.id = $1", conversation_id)
    return ConversationState.from_row(row) if row else None


async def states(conn: Connection, ids: Collection[int]) -> list[ConversationState]:
    rows = await conn.fetch(STATE + " WHERE c.id = ANY($1::bigint[]) ORDER BY c.id", list(ids))
    return [ConversationState.from_row(r) for r in rows]


async def owned_by(conn: Connection, visitor_id: int, ids: Collection[int]) -> set[int]:
    """Which of ``ids`` are the visitor's conversations."""
    rows = await conn.fetch(
        "SELECT id FROM conversations WHERE visitor_id = $1 AND id = ANY($2::bigint[])",
        visitor_id, list(ids),
    )
    return {row["id"] for row in rows}


async def existing(conn: Connection, ids: Collection[int]) -> set[int]:
    """Which of ``ids`` are conversations."""
    rows = await conn.fetch("SELECT id FROM conversations WHERE id = ANY($1::bigint[])",
                            list(ids))
    return {row["id"] for row in rows}


async def latest_of_visitor(
    conn: Connection, visitor_id: int, conversation_id: int | None = None
) -> ConversationState | None:
    """The visitor's conversation ``conversation_id``, or else their open one (or, if none
    is open, the latest)."""
    row = await conn.fetchrow(
        STATE + " WHERE c.visitor_id = $1 AND ($2::bigint IS NULL OR c.id = $2) "
        "ORDER BY c.status = 'closed', c.last_activity_at DESC LIMIT 1",
        visitor_id, conversation_id,
    )
    return ConversationState.from_row(row) if row else None


async def of_visitor(conn: Connection, visitor_id: int, limit: int) -> list[ConversationState]:
    rows = await conn.fetch(
        STATE + " WHERE c.visitor_id = $1 ORDER BY c.last_activity_at DESC LIMIT $2",
        visitor_id, limit,
    )
    return [ConversationState.from_row(r) for r in rows]


async def changed_within(conn: Connection, seconds: float) -> list[tuple[int, int, int]]:
    """(id, site_id, version) of every conversation changed in the last ``seconds``, by
    the database's clock."""
    rows = await conn.fetch(
        "SELECT id, site_id, version FROM conversations "
        "WHERE updated_at > now() - make_interval(secs => $1)", seconds,
    )
    return [(row["id"], row["site_id"], row["version"]) for row in rows]


# The inbox: every open conversation, and on the Closed tab the latest closed ones too.
INBOX = (
    "(c.status <> 'closed' OR ($1 AND c.id IN ("
    "  SELECT id FROM conversations WHERE status = 'closed' "
    "  ORDER BY last_activity_at DESC LIMIT 100)))"
)


async def inbox(conn: Connection, rows: Inbox, *, limit: int) -> list[ConversationState]:
    """The rows a dashboard page starts from (most recently active first), as its tab says
    (chat.tabs): every open conversation, and for "closed" the latest closed ones too."""
    found = await conn.fetch(
        STATE + f" WHERE {INBOX} ORDER BY c.last_activity_at DESC LIMIT $2",
        rows == "closed", limit,
    )
    return [ConversationState.from_row(r) for r in found]


async def search(conn: Connection, text: str, limit: int) -> list[ConversationState]:
    """Conversations whose visitor's name or email, or any message, matches ``text``."""
    rows = await conn.fetch(
        STATE + """
         WHERE lower(v.name) LIKE $1 OR lower(v.email) LIKE $1
            OR c.id IN (SELECT m.conversation_id FROM messages m
                         WHERE to_tsvector('simple', m.body) @@ plainto_tsquery('simple', $2))
         ORDER BY c.last_activity_at DESC LIMIT $3
        """,
        "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
        text, limit,
    )
    return [ConversationState.from_row(r) for r in rows]


async def reads(conn: Connection, agent_id: int) -> dict[int, int]:
    """How many visitor messages the agent has read, by conversation."""
    rows = await conn.fetch(
        "SELECT conversation_id, read_count FROM agent_reads WHERE agent_id = $1", agent_id
    )
    return {r["conversation_id"]: r["read_count"] for r in rows}


async def mark_read(conn: Connection, agent_id: int, conversation_id: int, count: int) -> None:
    await conn.execute(
        """
        INSERT INTO agent_reads (agent_id, conversation_id, read_count)
        SELECT $1, id, least($3, visitor_messages) FROM conversations WHERE id = $2
        ON CONFLICT (agent_id, conversation_id)
        DO UPDATE SET read_count = greatest(agent_reads.read_count, excluded.read_count)
        """,
        agent_id, conversation_id, count,
    )
