"""SQL for receipts: each conversation's delivered and read cursors (see chat.receipts)."""

from __future__ import annotations

from collections.abc import Sequence

from chat.db import Connection
from chat.models import Receipts

COLUMNS = "conversation_id, visitor_delivered, visitor_read, agent_delivered, agent_read"


async def of(conn: Connection, conversation_ids: Sequence[int]) -> list[Receipts]:
    """The cursors of these conversations (all zero where none moved yet)."""
    rows = await conn.fetch(
        """
        SELECT c.id AS conversation_id,
               coalesce(r.visitor_delivered, 0) AS visitor_delivered,
               coalesce(r.visitor_read, 0) AS visitor_read,
               coalesce(r.agent_delivered, 0) AS agent_delivered,
               coalesce(r.agent_read, 0) AS agent_read
        FROM conversations c LEFT JOIN receipts r ON r.conversation_id = c.id
        WHERE c.id = ANY($1::bigint[])
        """, list(conversation_ids))
    return [Receipts.from_row(row) for row in rows]


async def advance(conn: Connection, updates: Sequence[Receipts]) -> list[tuple[Receipts, int]]:
    """Move cursors forward (never back, nor past the conversation's last entry); the rows
    that moved, with their site. In conversation order, so that two processes writing the
    same rows wait for each other instead of deadlocking."""
    if not updates:
        return []
    ordered = sorted(updates, key=lambda r: r.conversation_id)
    columns = list(zip(*(r.cursors for r in ordered), strict=True))
    rows = await conn.fetch(
        f"""
        INSERT INTO receipts AS r ({COLUMNS})
        SELECT c.id, least(u.vd, c.last_seq), least(u.vr, c.last_seq),
               least(u.ad, c.last_seq), least(u.ar, c.last_seq)
        FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[], $5::int[])
             AS u(id, vd, vr, ad, ar)
        JOIN conversations c ON c.id = u.id
        ORDER BY c.id
        ON CONFLICT (conversation_id) DO UPDATE SET
            visitor_delivered = greatest(r.visitor_delivered, excluded.visitor_delivered),
            visitor_read = greatest(r.visitor_read, excluded.visitor_read),
            agent_delivered = greatest(r.agent_delivered, excluded.agent_delivered),
            agent_read = greatest(r.agent_read, excluded.agent_read)
        WHERE excluded.visitor_delivered > r.visitor_delivered
           OR excluded.visitor_read > r.visitor_read
           OR excluded.agent_delivered > r.agent_delivered
           OR excluded.agent_read > r.agent_read
        RETURNING {COLUMNS},
                  (SELECT site_id FROM conversations WHERE id = r.conversation_id) AS site_id
        """, [r.conversation_id for r in ordered], *map(list, columns))
    return [(Receipts.from_row(row), row["site_id"]) for row in rows]
