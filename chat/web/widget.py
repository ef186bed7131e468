"""The visitor's side: start a conversation, send messages, and one stream per conversation.

A visitor is identified by the token in the ``X-Visitor-Token`` header (the loader keeps
it in the host page's storage), never by a cookie, and reaches only its own conversations:
anything else is a 404, so a guessed id reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from asyncpg import Record
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from chat import frames, tokens
from chat.actions import conversations as actions
from chat.actions.conversations import Contact, Sent
from chat.db import Connection
from chat.errors import NotFound, Unauthorized
from chat.events import conversation_topic
from chat.frames import Audience
from chat.models import ConversationState
from chat.queries import conversations, sites, visitors
from chat.services import services
from chat.templating import render
from chat.web.http import fields, wants_html
from chat.web.streaming import sse_response

TOKEN_HEADER = "x-visitor-token"


async def site_of(request: Request) -> Record:
    async with services(request).pool.acquire() as conn:
        site = await sites.by_public_key(conn, request.path_params["site_key"])
    if site is None:
        raise NotFound("This chat is not available: the site key is unknown or disabled.")
    return site


async def visitor_of(request: Request, site: Record) -> Record | None:
    """The visitor whose token the request carries; :class:`Unauthorized` for a bad one."""
    token = request.headers.get(TOKEN_HEADER)
    if not token:
        return None
    async with services(request).pool.acquire() as conn:
        visitor = await visitors.by_token_hash(conn, site["id"], tokens.token_hash(token))
    if visitor is None:
        raise Unauthorized("This visitor token is not valid here; start a new conversation.")
    return visitor


async def own_conversation(request: Request) -> tuple[Record, int]:
    """(site, conversation id) when the request's visitor owns the conversation in the path."""
    site = await site_of(request)
    visitor = await visitor_of(request, site)
    if visitor is None:
        raise Unauthorized("A visitor token is required.")
    conversation_id = int(request.path_params["conversation_id"])
    async with services(request).pool.acquire() as conn:
        owned = await conversations.of_visitor(conn, visitor["id"], conversation_id)
    if owned is None:
        raise NotFound("No such conversation.")
    return site, conversation_id


def sent_response(request: Request, sent: Sent, token: str | None = None) -> Response:
    status = 201 if sent.created else 200
    if wants_html(request):
        html = render("partials/entry.html", entry=sent.entry, audience="visitor")
        return HTMLResponse(html, status_code=status)
    body: dict[str, Any] = {
        "conversation": {"id": sent.conversation.id, "status": sent.conversation.status},
        "message": {**sent.entry.to_json(), "cursor": f"{sent.entry.conversation_id}-"
                                                      f"{sent.entry.seq}"},
    }
    if token is not None:
        body["visitor_token"] = token
    return JSONResponse(body, status_code=status)


async def start_conversation(request: Request) -> Response:
    site = await site_of(request)
    visitor = await visitor_of(request, site)
    data = await fields(request)
    details = {"page": request.headers.get("referer"),
               "user_agent": request.headers.get("user-agent")}
    started = await actions.start(
        services(request), site_id=site["id"], visitor_id=visitor["id"] if visitor else None,
        body=data.get("body"), client_id=data.get("client_id"),
        contact=Contact.clean(data.get("name"), data.get("email"), details),
    )
    return sent_response(request, started, started.visitor_token)


async def send_message(request: Request) -> Response:
    _, conversation_id = await own_conversation(request)
    data = await fields(request)
    sent = await actions.send(services(request), conversation_id, body=data.get("body"),
                              client_id=data.get("client_id"))
    return sent_response(request, sent)


@dataclass
class VisitorView:
    """A visitor's stream: one conversation's public history and its status."""

    conversation_id: int
    audience: ClassVar[Audience] = "visitor"

    @property
    def topics(self) -> list[str]:
        return [conversation_topic(self.conversation_id)]

    async def snapshot(self, conn: Connection) -> tuple[list[bytes], list[ConversationState]]:
        state = await conversations.state(conn, self.conversation_id)
        if state is None:
            return [], []
        return self.state_frames(state), [state]

    def state_frames(self, state: ConversationState) -> list[bytes]:
        return [frames.status(state, "visitor")]


async def stream(request: Request) -> Response:
    _, conversation_id = await own_conversation(request)
    return sse_response(request, VisitorView(conversation_id))


routes = [
    Route("/widget/{site_key}/conversations", start_conversation, methods=["POST"]),
    Route("/widget/{site_key}/conversations/{conversation_id:int}/messages", send_message,
          methods=["POST"]),
    Route("/widget/{site_key}/conversations/{conversation_id:int}/stream", stream,
          methods=["GET"]),
]
