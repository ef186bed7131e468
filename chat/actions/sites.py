"""Sites: the websites that embed the widget."""

from __future__ import annotations

import secrets

import asyncpg
from asyncpg import Record

from chat import validation
from chat.db import Connection
from chat.errors import Conflict, NotFound
from chat.queries import sites
from chat.sites import SiteSettings, normalize_origin

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


async def create_site(conn: Connection, name: str, origins: list[str]) -> Record:
    """A new site with a fresh public key; origins are normalised and deduplicated."""
    clean_name = validation.name(name, "name")
    allowed = list(dict.fromkeys(normalize_origin(origin) for origin in origins))
    try:
        return await sites.insert(conn, public_key=new_public_key(), name=clean_name,
                                  allowed_origins=allowed)
    except asyncpg.UniqueViolationError:  # a 90-bit random key collided: vanishingly rare
        raise Conflict("Could not allocate a unique public key; try again.") from None


async def set_identity_verification(conn: Connection, site_id: int, on: bool) -> None:
    """Turn identity verification on with a new secret (which is also how to rotate it,
    invalidating every hash signed with the old one), or off."""
    secret = "is_" + secrets.token_urlsafe(32) if on else None
    if not await sites.set_identity_secret(conn, site_id, secret):
        raise NotFound("No such site.")


async def update_site(conn: Connection, site_id: int, *, name: str, origins: str,
                      settings: dict[str, object]) -> Record:
    """Save a site's name, origins (one per line or comma-separated) and widget settings."""
    allowed = list(dict.fromkeys(
        normalize_origin(origin) for origin in origins.replace(",", "\n").split() if origin
    ))
    clean = SiteSettings.clean(**settings).to_json()
    async with conn.transaction():
        row = await sites.update(conn, site_id, name=validation.name(name, "name"),
                                 allowed_origins=allowed, settings=clean)
    if row is None:
        raise NotFound("No such site.")
    return row
