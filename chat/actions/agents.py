"""Changes to agent accounts."""

from __future__ import annotations

import asyncpg
from asyncpg import Record

from chat import passwords, validation
from chat.db import Connection
from chat.errors import Conflict, Invalid
from chat.queries import agents

ROLES = ("admin", "agent")


async def create_agent(
    conn: Connection, *, email: str, name: str, password: str, role: str = "agent"
) -> Record:
    """Create an agent account; :class:`Conflict` when the email (any case) is taken."""
    if role not in ROLES:
        raise Invalid(f"Role must be one of {', '.join(ROLES)}.", "role")
    email = validation.email(email)
    name = validation.name(name)
    password_hash = passwords.hash_password(validation.password(password))
    try:
        async with conn.transaction():
            return await agents.insert(
                conn, email=email, name=name, role=role, password_hash=password_hash
            )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"An agent with the email {email} already exists.") from None
