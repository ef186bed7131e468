"""Changes to agent accounts."""

from __future__ import annotations

import asyncpg
from asyncpg import Record

from chat import events, passwords, validation
from chat.db import Connection, transaction
from chat.errors import Conflict, Invalid, NotFound
from chat.models import Agent
from chat.queries import agents, sessions
from chat.services import Services

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


# Serialises first-run set-up across processes.
SETUP_LOCK_KEY = 0x63686176


async def create_first_admin(svc: Services, *, email: str, name: str, password: str) -> Record:
    """The first admin of a new installation; :class:`NotFound` once anyone exists."""
    async with transaction(svc.pool) as conn:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SETUP_LOCK_KEY)
        if await agents.count(conn) > 0:
            raise NotFound("Set-up is done: sign in instead.")
        return await create_agent(conn, email=email, name=name, password=password,
                                  role="admin")


async def _keep_an_admin(conn: Connection, agent_id: int) -> None:
    """Refuse to deactivate or demote the last active admin: nobody could manage the team."""
    target = await agents.by_id(conn, agent_id)
    if target is None:
        raise NotFound("No such agent.")
    last = target["role"] == "admin" and target["active"] and (
        await agents.active_admins(conn) <= 1)
    if last:
        raise Conflict("This is the last active admin; make someone else an admin first.")


async def set_active(svc: Services, actor: Agent, agent_id: int, active: bool) -> Record:
    """Deactivate (ending every session and open page of theirs) or reactivate an agent."""
    if actor.id == agent_id and not active:
        raise Conflict("You cannot deactivate yourself.")
    async with transaction(svc.pool) as conn:
        if not active:
            await _keep_an_admin(conn, agent_id)
        row = await agents.update(conn, agent_id, active=active)
        if row is None:
            raise NotFound("No such agent.")
        if not active:
            await sessions.delete_for_agent(conn, agent_id)
    if not active:
        await events.publish_reload(svc.broker, events.agent_topic(agent_id))
    return row


async def set_role(svc: Services, agent_id: int, role: str) -> Record:
    if role not in ROLES:
        raise Invalid(f"Role must be one of {', '.join(ROLES)}.", "role")
    async with transaction(svc.pool) as conn:
        if role != "admin":
            await _keep_an_admin(conn, agent_id)
        row = await agents.update(conn, agent_id, role=role)
    if row is None:
        raise NotFound("No such agent.")
    return row


async def rename(svc: Services, agent: Agent, name: str) -> Record:
    async with transaction(svc.pool) as conn:
        row = await agents.update(conn, agent.id, name=validation.name(name))
    assert row is not None
    return row


async def change_password(svc: Services, agent: Agent, current: str, new: str) -> None:
    """Needs the current password."""
    async with transaction(svc.pool) as conn:
        row = await agents.by_email(conn, agent.email)
        if row is None or not passwords.verify_password(row["password_hash"], current):
            raise Invalid("The current password is not right.", "current_password")
        await agents.update(conn, agent.id,
                            password_hash=passwords.hash_password(validation.password(new)))
