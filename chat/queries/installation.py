"""SQL for the installation: the one row naming this deployment."""

from __future__ import annotations

from chat.db import Connection


async def namespace(conn: Connection) -> str:
    """A short, stable name for this installation's Redis channels and keys."""
    # The migration made the row; should it be gone (a restore of some tables only),
    # make a new one rather than refuse to start.
    await conn.execute("INSERT INTO installation DEFAULT VALUES ON CONFLICT DO NOTHING")
    installation_id = await conn.fetchval("SELECT id FROM installation")
    return f"chat:{installation_id.hex[:12]}"
