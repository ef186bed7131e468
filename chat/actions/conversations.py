"""Conversations and their history: start, send, claim, assign, close, reopen.

Each action locks the conversation row, writes the row and its history entries (taking
sequence numbers under that lock) in one transaction, or in one statement for a plain
message, and only after the commit publishes the :class:`Change`. A refused action raises
before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chat import events, tokens, validation
from chat.db import Connection, transaction
from chat.errors import Conflict, Invalid, NotFound
from chat.models import OPEN, STATUSES, Agent, Change, ConversationState, Entry, Status
from chat.queries import agents as agent_queries
from chat.queries import conversations, messages, visitors
from chat.services import Services

MAX_BODY_LENGTH = 5000
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# The history line of a visitor's End chat, as agents read it (the widget says "You ...").
VISITOR_ENDED = "The visitor ended the chat"


class StaleState(Conflict):
    """The conversation changed meanwhile; carries its current state for the caller to show."""

    def __init__(self, message: str, conversation: ConversationState) -> None:
        super().__init__(message)
        self.conversation = conversation


@dataclass(frozen=True, slots=True)
class Sent:
    entry: Entry
    conversation: ConversationState
    created: bool  # False when the client id was seen before: a retried send


def clean_body(body: str) -> str:
    """The message text, trimmed; :class:`Invalid` when empty or too long."""
    text = body.strip()
    if not text:
        raise Invalid("Type a message first.", "body")
    if len(text) > MAX_BODY_LENGTH:
        raise Invalid(f"A message can be at most {MAX_BODY_LENGTH:,} characters "
                      f"(this one has {len(text):,}).", "body")
    return text


def clean_client_id(client_id: str | None) -> str | None:
    if not client_id:
        return None
    if not CLIENT_ID.fullmatch(client_id):
        raise Invalid("client_id must be 1-64 letters, digits or _.:-", "client_id")
    return client_id


async def _current(conn: Connection, conversation_id: int) -> ConversationState:
    state = await conversations.state(conn, conversation_id)
    assert state is not None
    return state


@dataclass(frozen=True, slots=True)
class Contact:
    """What a visitor tells about themselves (pre-chat form, API) and their browser."""

    name: str | None = None
    email: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    # The identity secret with which the site's server vouched for the email (identity
    # verification); None when it did not.
    proof_secret: str | None = field(default=None, repr=False)

    @classmethod
    def clean(cls, name: str | None = None, email: str | None = None,
              details: Mapping[str, Any] | None = None) -> Contact:
        return cls(
            name=validation.name(name) if name and name.strip() else None,
            email=validation.email(email) if email and email.strip() else None,
            details=details or {},
        )

    @property
    def verified_email(self) -> str | None:
        return self.email if self.proof_secret else None


@dataclass(frozen=True, slots=True)
class Started(Sent):
    visitor_token: str | None = None  # set when this request created the visitor


async def start(
    svc: Services,
    *,
    site_id: int,
    visitor_id: int | None,
    body: str,
    client_id: str | None = None,
    contact: Contact | None = None,
) -> Started:
    """Open a conversation (waiting for an agent) with the visitor's first message.

    Without ``visitor_id`` a new visitor is created in the same transaction and its token
    returned (the only time it is ever visible). A known visitor retrying a start with the
    same ``client_id`` gets the conversation it already started.
    """
    text, cid = clean_body(body), clean_client_id(client_id)
    contact = contact or Contact()
    token = None
    async with transaction(svc.pool) as conn:
        if visitor_id is None:
            token = tokens.new_token()
            visitor_id = await visitors.insert(
                conn, site_id=site_id, token_hash=tokens.token_hash(token), name=contact.name,
                email=contact.email, verified_email=contact.verified_email,
                proof_secret=contact.proof_secret, details=contact.details,
            )
        else:
            if cid is not None:
                existing = await messages.by_visitor_client_id(conn, visitor_id, cid)
                if existing is not None:
                    state = await _current(conn, existing.conversation_id)
                    return Started(existing, state, created=False)
            await visitors.update_contact(conn, visitor_id, name=contact.name,
                                          email=contact.email,
                                          verified_email=contact.verified_email,
                                          proof_secret=contact.proof_secret)
        conversation_id = await conversations.insert(conn, site_id=site_id, visitor_id=visitor_id)
        added = await messages.append(conn, conversation_id, kind="visitor", body=text,
                                      client_id=cid, statuses=("waiting",))
        assert added is not None  # a new conversation, waiting, with no entries yet
    entry, state = added
    await events.publish(svc.broker, Change(state, (entry,)))
    return Started(entry, state, created=True, visitor_token=token)


async def send(
    svc: Services,
    conversation_id: int,
    *,
    body: str,
    client_id: str | None = None,
    agent: Agent | None = None,
    note: bool = False,
) -> Sent:
    """Add a visitor message (no ``agent``), an agent reply, or a private note.

    A retried send (same ``client_id``) returns the first message and publishes nothing.
    Visitors write to open conversations only; notes go anywhere. This is the hot path:
    one statement, no explicit transaction.
    """
    text, cid = clean_body(body), clean_client_id(client_id)
    if agent is not None and not note:
        return await _reply(svc, conversation_id, agent, text, cid)
    async with svc.pool.acquire() as conn:
        added = await messages.append(
            conn, conversation_id, kind="note" if note else "visitor", body=text, client_id=cid,
            statuses=STATUSES if note else OPEN, agent_id=agent.id if agent else None,
            author=agent.name if agent else None,
        )
        if added is None:
            return await _refused(conn, conversation_id, cid, agent)
    entry, state = added
    await events.publish(svc.broker, Change(state, (entry,)))
    return Sent(entry, state, created=True)


async def _reply(
    svc: Services, conversation_id: int, agent: Agent, text: str, cid: str | None
) -> Sent:
    """An agent's reply; to a waiting conversation it first takes it, as a claim would."""
    async with transaction(svc.pool) as conn:
        row = await conversations.lock(conn, conversation_id)
        if row is None:
            raise NotFound("No such conversation.")
        new: list[Entry] = []
        if row["status"] == "waiting":
            joined, _ = await _transition(conn, conversation_id, agent, "active", agent.id,
                                          f"{agent.name} joined the conversation")
            new.append(joined)
        added = await messages.append(conn, conversation_id, kind="agent", body=text,
                                      client_id=cid, statuses=("active",), agent_id=agent.id,
                                      author=agent.name)
        if added is None:
            return await _refused(conn, conversation_id, cid, agent)
    entry, state = added
    await events.publish(svc.broker, Change(state, (*new, entry)))
    return Sent(entry, state, created=True)


async def _refused(
    conn: Connection, conversation_id: int, cid: str | None, agent: Agent | None
) -> Sent:
    """Why an append wrote nothing: a retried send (answer with the first), else the status."""
    if cid is not None:
        existing = await messages.by_client_id(conn, conversation_id, cid)
        if existing is not None:
            return Sent(existing, await _current(conn, conversation_id), created=False)
    state = await conversations.state(conn, conversation_id)
    if state is None:
        raise NotFound("No such conversation.")
    raise StaleState("This conversation is closed." + (
        " Start a new one." if agent is None else " Reopen it to reply."), state)


async def _transition(
    conn: Connection, conversation_id: int, agent: Agent | None, status: Status,
    assignee_id: int | None, activity: str,
) -> tuple[Entry, ConversationState]:
    """Set status and assignee, and say so in the history, as done by ``agent`` or, with
    None, by the conversation's visitor (``meta.by``). The caller holds the lock."""
    await conversations.update(conn, conversation_id, status=status, assignee_id=assignee_id)
    meta: dict[str, Any] = {"status": status, "assignee_id": assignee_id}
    if agent is None:
        meta["by"] = "visitor"
    added = await messages.append(
        conn, conversation_id, kind="activity", body=activity, statuses=(status,),
        agent_id=agent.id if agent else None, author=agent.name if agent else None, meta=meta,
    )
    assert added is not None  # locked, and just given this status
    return added


async def _change_status(
    svc: Services,
    conversation_id: int,
    agent: Agent | None,
    *,
    allowed: tuple[Status, ...],
    status: Status,
    assignee_id: int | None,
    activity: str,
    refusal: str,
    keep_assignee: bool = False,
    idempotent: bool = False,
) -> ConversationState:
    """Move a conversation from one of ``allowed`` to ``status``; from elsewhere, refused
    with the current state, or with ``idempotent``, when it already has ``status``, left as
    it is: nothing written, nothing published."""
    async with transaction(svc.pool) as conn:
        row = await conversations.lock(conn, conversation_id)
        if row is None:
            raise NotFound("No such conversation.")
        if idempotent and row["status"] == status:
            return await _current(conn, conversation_id)
        if row["status"] not in allowed:
            state = await _current(conn, conversation_id)
            who = state.assignee_name or "Someone"
            raise StaleState(refusal.format(who=who, status=state.status), state)
        if keep_assignee:
            assignee_id = row["assignee_id"]
        entry, state = await _transition(conn, conversation_id, agent, status, assignee_id,
                                         activity)
    await events.publish(svc.broker, Change(state, (entry,)))
    return state


async def claim(svc: Services, conversation_id: int, agent: Agent) -> ConversationState:
    """Take a waiting conversation. Of two agents claiming at once, exactly one wins."""
    return await _change_status(
        svc, conversation_id, agent, allowed=("waiting",), status="active",
        assignee_id=agent.id, activity=f"{agent.name} joined the conversation",
        refusal="{who} already took this conversation; it is {status}.",
    )


async def assign(
    svc: Services, conversation_id: int, agent: Agent, assignee_id: int
) -> ConversationState:
    """Give an open conversation to an agent (``agent`` itself, or a transfer)."""
    async with svc.pool.acquire() as conn:
        assignee = await agent_queries.by_id(conn, assignee_id)
    if assignee is None or not assignee["active"]:
        raise Invalid("Choose an active agent to assign the conversation to.", "assignee_id")
    activity = (f"{agent.name} joined the conversation" if assignee_id == agent.id
                else f"{agent.name} assigned the conversation to {assignee['name']}")
    return await _change_status(
        svc, conversation_id, agent, allowed=("waiting", "active"), status="active",
        assignee_id=assignee_id, activity=activity,
        refusal="This conversation is {status}; reopen it first.",
    )


async def close(svc: Services, conversation_id: int, agent: Agent | None) -> ConversationState:
    """Close an open conversation: by ``agent``, or with None by its visitor ("End chat").

    An agent closing a closed one is told someone was first (409); for the visitor a second
    End chat (another tab, a retry after a lost answer) is harmless and changes nothing.
    """
    return await _change_status(
        svc, conversation_id, agent, allowed=OPEN, status="closed", assignee_id=None,
        keep_assignee=True, activity=(f"{agent.name} closed the conversation" if agent
                                      else VISITOR_ENDED),
        refusal="This conversation is already {status}.", idempotent=agent is None,
    )


async def reopen(svc: Services, conversation_id: int, agent: Agent) -> ConversationState:
    """Reopen a closed conversation, assigned to the agent who reopens it."""
    return await _change_status(
        svc, conversation_id, agent, allowed=("closed",), status="active",
        assignee_id=agent.id, activity=f"{agent.name} reopened the conversation",
        refusal="This conversation is {status}, not closed.",
    )


async def mark_read(svc: Services, agent: Agent, conversation_id: int, count: int,
                    seq: int = 0) -> None:
    """Remember how many of the visitor's messages ``agent`` has seen (for unread counts)
    and up to which entry (for the visitor's read receipts)."""
    async with svc.pool.acquire() as conn:
        await conversations.mark_read(conn, agent.id, conversation_id, max(0, count))
    if seq and svc.recorder is not None:
        svc.recorder.read("agent", conversation_id, seq)


def visitor_read(svc: Services, conversation_id: int, seq: int) -> None:
    """The visitor saw the conversation up to entry ``seq`` (the agents' read receipts)."""
    if svc.recorder is not None:
        svc.recorder.read("visitor", conversation_id, seq)
