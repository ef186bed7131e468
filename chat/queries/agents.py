"""SQL for the agents table."""

from __future__ import annotations

from asyncpg import Record

from chat.db import Connection


async def insert(
    conn: Connection, *, email: str, name: str, role: str, password_hash: str
) -> Record:
    row: Record | None = await conn.fetchrow(
        """
        INSERT INTO agents (email, name, role, password_hash)
        VALUES ($1, $2, $3, $4)
        RETURNING id, email, name, role, active, created_at
        """,
        email, name, role, password_hash,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def by_email(conn: Connection, email: str) -> Record | None:
    row: Record | None = await conn.fetchrow(
        "SELECT * FROM agents WHERE lower(email) = lower($1)", email
    )
    return row


async def count(conn: Connection) -> int:
    total: int = await conn.fetchval("SELECT count(*) FROM agents")
    return total


async def by_id(conn: Connection, agent_id: int) -> Record | None:
    row: Record | None = await conn.fetchrow(
        "SELECT id, email, name, role, active FROM agents WHERE id = $1", agent_id
    )
    return row
