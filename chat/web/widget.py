"""The visitor's side: start a conversation, send messages, and one stream per conversation.

A visitor is identified by the token in the ``X-Visitor-Token`` header (the loader keeps
it in the host page's storage), never by a cookie, and reaches only its own conversations:
anything else is a 404, so a guessed id reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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
from chat.queries import conversations, visitors
from chat.services import services
from chat.templating import render
from chat.web.http import fields, wants_html
from chat.web.streaming import sse_response

TOKEN_HEADER = "x-visitor-token"


@dataclass(frozen=True, slots=True)
class Access:
    site_id: int
    visitor_id: int | None
    conversation_id: int | None


async def authorize(request: Request, *, conversation: bool = False) -> Access:
    """Who is asking, checked in one query: the site in the path, the visitor of the
    token header, and (with ``conversation``) that the visitor owns the one in the path."""
    token = request.headers.get(TOKEN_HEADER)
    conversation_id = request.path_params.get("conversation_id") if conversation else None
    async with services(request).pool.acquire() as conn:
        row = await visitors.access(conn, request.path_params["site_key"],
                                    tokens.token_hash(token) if token else None, conversation_id)
    if row is None:
        raise NotFound("This chat is not available: the site key is unknown or disabled.")
    if token and row["visitor_id"] is None:
        raise Unauthorized("This visitor token is not valid here; start a new conversation.")
    if conversation and row["visitor_id"] is None:
        raise Unauthorized("A visitor token is required.")
    if conversation and row["conversation_id"] is None:
        raise NotFound("No such conversation.")
    return Access(row["site_id"], row["visitor_id"], row["conversation_id"])


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
    access = await authorize(request)
    data = await fields(request)
    details = {"page": request.headers.get("referer"),
               "user_agent": request.headers.get("user-agent")}
    started = await actions.start(
        services(request), site_id=access.site_id, visitor_id=access.visitor_id,
        body=data.get("body"), client_id=data.get("client_id"),
        contact=Contact.clean(data.get("name"), data.get("email"), details),
    )
    return sent_response(request, started, started.visitor_token)


async def send_message(request: Request) -> Response:
    access = await authorize(request, conversation=True)
    data = await fields(request)
    assert access.conversation_id is not None
    sent = await actions.send(services(request), access.conversation_id, body=data.get("body"),
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
    access = await authorize(request, conversation=True)
    assert access.conversation_id is not None
    return sse_response(request, VisitorView(access.conversation_id))


routes = [
    Route("/widget/{site_key}/conversations", start_conversation, methods=["POST"]),
    Route("/widget/{site_key}/conversations/{conversation_id:int}/messages", send_message,
          methods=["POST"]),
    Route("/widget/{site_key}/conversations/{conversation_id:int}/stream", stream,
          methods=["GET"]),
]
