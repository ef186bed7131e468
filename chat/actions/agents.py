"""Changes to agent accounts."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from asyncpg import Record

from chat import events, passwords, validation
from chat.db import Connection, transaction
from chat.errors import Conflict, Invalid, NotFound
from chat.models import Agent
from chat.queries import agents, sessions
from chat.services import Services

ROLES = ("admin", "agent")


@dataclass(frozen=True, slots=True)
class NewAgent:
    """A validated account, its password already hashed: ready to insert."""

    email: str
    name: str
    role: str
    password_hash: str = field(repr=False)


async def prepare_agent(*, email: str, name: str, password: str, role: str = "agent") -> NewAgent:
    """Validate an account and hash its password (slow, off the event loop); call it
    before taking a database connection, so none is held while hashing."""
    if role not in ROLES:
        raise Invalid(f"Role must be one of {', '.join(ROLES)}.", "role")
    email, name = validation.email(email), validation.name(name)
    password_hash = await passwords.hash_password(validation.password(password))
    return NewAgent(email, name, role, password_hash)


async def insert_agent(conn: Connection, new: NewAgent) -> Record:
    """Store a prepared account; :class:`Conflict` when the email (any case) is taken."""
    try:
        async with conn.transaction():
            return await agents.insert(conn, email=new.email, name=new.name, role=new.role,
                                       password_hash=new.password_hash)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"An agent with the email {new.email} already exists.") from None


async def create_agent(
    conn: Connection, *, email: str, name: str, password: str, role: str = "agent"
) -> Record:
    """Prepare and store an account on a connection of the caller's (the CLI's)."""
    return await insert_agent(conn, await prepare_agent(email=email, name=name,
                                                        password=password, role=role))


async def add_agent(svc: Services, *, email: str, name: str, password: str,
                    role: str = "agent") -> Record:
    """An admin adds someone to the team."""
    new = await prepare_agent(email=email, name=name, password=password, role=role)
    async with svc.pool.acquire() as conn:
        return await insert_agent(conn, new)


# Serialises first-run set-up across processes.
SETUP_LOCK_KEY = 0x63686176


async def create_first_admin(svc: Services, *, email: str, name: str, password: str) -> Record:
    """The first admin of a new installation; :class:`NotFound` once anyone exists."""
    async with svc.pool.acquire() as conn:
        if await agents.count(conn) > 0:  # before hashing: set-up is over for good
            raise NotFound("Set-up is done: sign in instead.")
    new = await prepare_agent(email=email, name=name, password=password, role="admin")
    async with transaction(svc.pool) as conn:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SETUP_LOCK_KEY)
        if await agents.count(conn) > 0:
            raise NotFound("Set-up is done: sign in instead.")
        return await insert_agent(conn, new)


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


async def change_password(svc: Services, agent: Agent, current: str, new: str,
                          session_hash: bytes) -> None:
    """Needs the current password; signs the agent out everywhere else (open pages too),
    keeping only the session ``session_hash`` that made the change."""
    new = validation.password(new)
    async with svc.pool.acquire() as conn:
        stored = await agents.password_hash(conn, agent.id)
    if stored is None or not await passwords.verify_password(stored, current):
        raise Invalid("The current password is not right.", "current_password")
    password_hash = await passwords.hash_password(new)
    async with transaction(svc.pool) as conn:
        await agents.update(conn, agent.id, password_hash=password_hash)
        ended = await sessions.delete_for_agent(conn, agent.id, keep=session_hash)
    for token_hash in ended:
        await events.publish_reload(svc.broker, events.session_topic(token_hash))
