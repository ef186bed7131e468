"""SQL for sites: the websites that embed the widget."""

from __future__ import annotations

from asyncpg import Record

from chat.db import Connection

COLUMNS = "id, public_key, name, allowed_origins, settings, enabled, identity_secret, created_at"
COLUMNS_OF_S = ", ".join(f"s.{column.strip()}" for column in COLUMNS.split(","))


async def by_public_key(conn: Connection, public_key: str) -> Record | None:
    row: Record | None = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM sites WHERE public_key = $1 AND enabled", public_key
    )
    return row


async def all_sites(conn: Connection) -> list[Record]:
    return list(await conn.fetch(f"SELECT {COLUMNS} FROM sites ORDER BY id"))


async def ids(conn: Connection) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM sites WHERE enabled ORDER BY id")]


async def insert(
    conn: Connection, *, public_key: str, name: str, allowed_origins: list[str]
) -> Record:
    row: Record | None = await conn.fetchrow(
        f"INSERT INTO sites (public_key, name, allowed_origins) VALUES ($1, $2, $3) "
        f"RETURNING {COLUMNS}",
        public_key, name, allowed_origins,
    )
    assert row is not None
    return row


async def set_identity_secret(conn: Connection, site_id: int, secret: str | None) -> bool:
    """Replace (or with None, remove) a site's identity secret; False if no such site."""
    done: str = await conn.execute(
        "UPDATE sites SET identity_secret = $2, updated_at = now() WHERE id = $1",
        site_id, secret,
    )
    return done == "UPDATE 1"


async def update(
    conn: Connection, site_id: int, *, name: str, allowed_origins: list[str],
    settings: dict[str, object],
) -> Record | None:
    row: Record | None = await conn.fetchrow(
        f"UPDATE sites SET name = $2, allowed_origins = $3, settings = $4, updated_at = now() "
        f"WHERE id = $1 RETURNING {COLUMNS}",
        site_id, name, allowed_origins, settings,
    )
    return row

