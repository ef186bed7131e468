"""Signing agents in and out of the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chat import events, passwords, tokens
from chat.db import transaction
from chat.errors import Unauthorized
from chat.models import Agent
from chat.queries import agents, sessions
from chat.services import Services

SESSION_LIFETIME = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class SignedIn:
    agent: Agent
    token: str  # goes into the session cookie, never stored
    csrf_token: str
    expires_at: datetime


async def sign_in(svc: Services, email: str, password: str) -> SignedIn:
    """A new session; one generic :class:`Unauthorized` for every wrong credential.

    The password is checked with no database connection held: hashing is slow.
    """
    async with svc.pool.acquire() as conn:
        row = await agents.by_email(conn, email.strip())
    valid = await passwords.verify_password(row["password_hash"] if row else None, password)
    if row is None or not valid or not row["active"]:
        raise Unauthorized("Wrong email or password.")
    token, csrf = tokens.new_token(), tokens.new_token()
    expires_at = datetime.now(UTC) + SESSION_LIFETIME
    async with svc.pool.acquire() as conn:
        started = await sessions.insert(conn, token_hash=tokens.token_hash(token),
                                        agent_id=row["id"], csrf_token=csrf,
                                        expires_at=expires_at)
    if not started:  # deactivated while the password was being checked
        raise Unauthorized("Wrong email or password.")
    agent = Agent(id=row["id"], name=row["name"], email=row["email"], role=row["role"])
    return SignedIn(agent, token, csrf, expires_at)


async def sign_out(svc: Services, token: str) -> None:
    """End the session, and with it the streams of the pages it has open."""
    token_hash = tokens.token_hash(token)
    async with transaction(svc.pool) as conn:
        await sessions.delete(conn, token_hash)
    await events.publish_reload(svc.broker, events.session_topic(token_hash))
