"""SQL for canned responses: replies an admin prepared, inserted with "/shortcut"."""

from __future__ import annotations

from asyncpg import Record

from chat.db import Connection


async def all_responses(conn: Connection) -> list[Record]:
    return list(await conn.fetch("SELECT id, shortcut, body FROM canned_responses "
                                 "ORDER BY shortcut"))


async def insert(conn: Connection, *, shortcut: str, body: str, created_by: int) -> Record:
    row: Record | None = await conn.fetchrow(
        "INSERT INTO canned_responses (shortcut, body, created_by) VALUES ($1, $2, $3) "
        "RETURNING id, shortcut, body",
        shortcut, body, created_by,
    )
    assert row is not None
    return row


async def delete(conn: Connection, response_id: int) -> bool:
    deleted: str = await conn.execute("DELETE FROM canned_responses WHERE id = $1", response_id)
    return deleted.endswith(" 1")
