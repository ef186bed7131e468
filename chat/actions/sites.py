"""Sites: the websites that embed the widget."""

from __future__ import annotations

import secrets

from asyncpg import Record

from chat.db import Connection
from chat.queries import sites

DEFAULT_SITE_NAME = "My website"
# Serialises first-run set-up between processes that start at the same moment.
SETUP_LOCK_KEY = 0x63686175


def new_public_key() -> str:
    return "pk_" + secrets.token_urlsafe(15)


async def ensure_default_site(conn: Connection) -> Record | None:
    """Create the first site on a new installation; None when sites exist already."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SETUP_LOCK_KEY)
        if await sites.all_sites(conn):
            return None
        return await sites.insert(conn, public_key=new_public_key(), name=DEFAULT_SITE_NAME,
                                  allowed_origins=[])
