"""SQL for signed-in dashboard sessions."""

from __future__ import annotations

from datetime import datetime

from asyncpg import Record

from chat.db import Connection


async def insert(
    conn: Connection, *, token_hash: bytes, agent_id: int, csrf_token: str, expires_at: datetime
) -> bool:
    """A session for the agent, if still active; False (and none) once deactivated."""
    done: str = await conn.execute(
        "INSERT INTO agent_sessions (token_hash, agent_id, csrf_token, expires_at) "
        "SELECT $1, id, $3, $4 FROM agents WHERE id = $2 AND active",
        token_hash, agent_id, csrf_token, expires_at,
    )
    return done == "INSERT 0 1"


async def agent_for(conn: Connection, token_hash: bytes) -> Record | None:
    """The active agent of an unexpired session, with the session's CSRF token and end,
    and the agent's alert preference (pages show it)."""
    row: Record | None = await conn.fetchrow(
        """
        SELECT a.id, a.email, a.name, a.role, a.alerts, a.alert_sound, s.csrf_token,
               s.expires_at
          FROM agent_sessions s JOIN agents a ON a.id = s.agent_id
         WHERE s.token_hash = $1 AND s.expires_at > now() AND a.active
        """,
        token_hash,
    )
    return row


async def delete(conn: Connection, token_hash: bytes) -> None:
    await conn.execute("DELETE FROM agent_sessions WHERE token_hash = $1", token_hash)


async def delete_for_agent(conn: Connection, agent_id: int,
                           keep: bytes | None = None) -> list[bytes]:
    """End every session of the agent but ``keep``; the token hashes of those ended."""
    rows = await conn.fetch(
        "DELETE FROM agent_sessions WHERE agent_id = $1 AND token_hash IS DISTINCT FROM $2 "
        "RETURNING token_hash",
        agent_id, keep,
    )
    return [row["token_hash"] for row in rows]
