"""SQL for the agents table."""

from __future__ import annotations

from asyncpg import Record

from chat.db import Connection
from chat.models import Alerts


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


async def password_hash(conn: Connection, agent_id: int) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT password_hash FROM agents WHERE id = $1", agent_id)
    return found


async def all_agents(conn: Connection) -> list[Record]:
    return list(await conn.fetch(
        "SELECT id, email, name, role, active, created_at FROM agents ORDER BY active DESC, name"
    ))


async def update(conn: Connection, agent_id: int, **columns: object) -> Record | None:
    """Set the given columns (name, role, active, password_hash) of one agent."""
    assert set(columns) <= {"name", "role", "active", "password_hash"}, columns
    assignments = ", ".join(f"{name} = ${n}" for n, name in enumerate(columns, start=2))
    row: Record | None = await conn.fetchrow(
        f"UPDATE agents SET {assignments}, updated_at = now() WHERE id = $1 "
        "RETURNING id, email, name, role, active",
        agent_id, *columns.values(),
    )
    return row


async def active_admins(conn: Connection) -> int:
    total: int = await conn.fetchval(
        "SELECT count(*) FROM agents WHERE role = 'admin' AND active"
    )
    return total


async def set_alerts(conn: Connection, agent_id: int, chosen: Alerts) -> None:
    await conn.execute(
        "UPDATE agents SET alerts = $2, alert_sound = $3, updated_at = now() WHERE id = $1",
        agent_id, chosen.level, chosen.sound,
    )
