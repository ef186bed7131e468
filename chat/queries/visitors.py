"""SQL for visitors: the customers behind widget tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asyncpg import Record

from chat.db import Connection
from chat.queries import sites


async def insert(
    conn: Connection,
    *,
    site_id: int,
    token_hash: bytes,
    name: str | None,
    email: str | None,
    verified_email: str | None,
    proof_secret: str | None,
    details: Mapping[str, Any],
) -> int:
    """A new visitor; ``proof_secret`` is the identity secret that proved ``verified_email``
    (only its fingerprint is kept)."""
    visitor_id: int = await conn.fetchval(
        "INSERT INTO visitors (site_id, token_hash, name, email, verified_email, verified_by, "
        "details) VALUES ($1, $2, $3, $4, $5, identity_fingerprint($6), $7::jsonb) RETURNING id",
        site_id, token_hash, name, email, verified_email, proof_secret, dict(details),
    )
    return visitor_id


async def update_contact(
    conn: Connection, visitor_id: int, *, name: str | None, email: str | None,
    verified_email: str | None, proof_secret: str | None,
) -> None:
    """Fill in name and email when given; never erase what the visitor said before, nor
    a proof of identity (it stops counting once the email differs from it, or the secret
    that proved it is rotated)."""
    await conn.execute(
        "UPDATE visitors SET name = coalesce($2, name), email = coalesce($3, email), "
        "verified_email = coalesce($4, verified_email), "
        "verified_by = CASE WHEN $4::text IS NULL THEN verified_by "
        "                   ELSE identity_fingerprint($5) END, "
        "last_seen_at = now() WHERE id = $1",
        visitor_id, name, email, verified_email, proof_secret,
    )


async def access(
    conn: Connection, public_key: str, token_hash: bytes | None, conversation_id: int | None
) -> Record | None:
    """In one round trip: the site (None if unknown or disabled), the token's visitor on that
    site, and the conversation if that visitor owns it."""
    row: Record | None = await conn.fetchrow(
        f"""
        SELECT {sites.COLUMNS_OF_S}, v.id AS visitor_id, v.name AS visitor_name,
               c.id AS conversation_id
          FROM sites s
          LEFT JOIN visitors v ON v.site_id = s.id AND v.token_hash = $2
          LEFT JOIN conversations c ON c.id = $3 AND c.visitor_id = v.id
         WHERE s.public_key = $1 AND s.enabled
        """,
        public_key, token_hash, conversation_id,
    )
    return row


async def profile(conn: Connection, visitor_id: int) -> Record | None:
    """What the agent's visitor panel shows."""
    row: Record | None = await conn.fetchrow(
        "SELECT v.id, v.name, v.email, v.details, v.created_at, v.last_seen_at, "
        "       lower(v.email) = lower(v.verified_email) "
        "       AND v.verified_by = identity_fingerprint(s.identity_secret) AS verified "
        "  FROM visitors v JOIN sites s ON s.id = v.site_id WHERE v.id = $1",
        visitor_id,
    )
    return row


async def seen(conn: Connection, visitor_id: int, page: str | None = None) -> None:
    """The visitor was here just now (on ``page``, when given)."""
    await conn.execute(
        "UPDATE visitors SET last_seen_at = now(), details = CASE WHEN $2::text IS NULL "
        "THEN details ELSE details || jsonb_build_object('page', $2::text) END WHERE id = $1",
        visitor_id, page,
    )
