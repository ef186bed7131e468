"""The agent's side: reply, take notes, change status, and one stream per dashboard page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from chat import frames
from chat.actions import conversations as actions
from chat.db import Connection
from chat.errors import NotFound
from chat.events import site_topic
from chat.frames import Audience
from chat.models import ConversationState
from chat.queries import conversations, sites
from chat.services import services
from chat.templating import render
from chat.web.auth import require_agent
from chat.web.http import fields, int_param, wants_html
from chat.web.streaming import sse_response

INBOX_SIZE = 200


def state_response(request: Request, state: ConversationState, status: int = 200) -> Response:
    if wants_html(request):
        html = render("partials/conversation_status.html", conversation=state)
        return HTMLResponse(html, status_code=status)
    return JSONResponse({"conversation": state.to_json()}, status_code=status)


async def reply(request: Request) -> Response:
    data = await fields(request)
    agent = await require_agent(request, data)
    sent = await actions.send(
        services(request), request.path_params["conversation_id"], body=data.get("body"),
        client_id=data.get("client_id"), agent=agent, note=_truthy(data.get("note")),
    )
    if wants_html(request):
        html = render("partials/entry.html", entry=sent.entry, audience="agent")
        return HTMLResponse(html, status_code=201 if sent.created else 200)
    body: dict[str, Any] = {"conversation": sent.conversation.to_json(),
                            "message": sent.entry.to_json()}
    return JSONResponse(body, status_code=201 if sent.created else 200)


def _truthy(value: object) -> bool:
    return value in (True, "1", "true", "on", "yes")


async def change_status(request: Request) -> Response:
    data = await fields(request)
    agent = await require_agent(request, data)
    svc, conversation_id = services(request), request.path_params["conversation_id"]
    match request.path_params["action"]:
        case "claim":
            state = await actions.claim(svc, conversation_id, agent)
        case "close":
            state = await actions.close(svc, conversation_id, agent)
        case "reopen":
            state = await actions.reopen(svc, conversation_id, agent)
        case "assign":
            assignee = int_param(str(data.get("assignee_id", "")), "assignee_id")
            state = await actions.assign(svc, conversation_id, agent, assignee or agent.id)
        case _:
            raise NotFound("No such action.")
    return state_response(request, state)


@dataclass
class AgentView:
    """A dashboard page's stream: the inbox of every site, plus one open conversation."""

    site_ids: list[int]
    conversation_id: int | None
    audience: ClassVar[Audience] = "agent"

    @property
    def topics(self) -> list[str]:
        return [site_topic(site_id) for site_id in self.site_ids]

    async def snapshot(self, conn: Connection) -> tuple[list[bytes], list[ConversationState]]:
        states = await conversations.open_states(conn, INBOX_SIZE)
        batch = [frames.inbox(states)]
        if self.conversation_id is not None:
            state = next((s for s in states if s.id == self.conversation_id), None)
            state = state or await conversations.state(conn, self.conversation_id)
            if state is not None:
                batch.append(frames.status(state, "agent"))
                states = [*states, state]
        return batch, states

    def state_frames(self, state: ConversationState) -> list[bytes]:
        batch = [frames.inbox_row(state)]
        if state.id == self.conversation_id:
            batch.append(frames.status(state, "agent"))
        return batch


async def stream(request: Request) -> Response:
    await require_agent(request)
    conversation_id = int_param(request.query_params.get("conversation"), "conversation")
    async with services(request).pool.acquire() as conn:
        if conversation_id is not None and not await conversations.exists(conn, conversation_id):
            raise NotFound("No such conversation.")
        site_ids = await sites.ids(conn)
    return sse_response(request, AgentView(site_ids, conversation_id))


routes = [
    Route("/stream", stream, methods=["GET"]),
    Route("/conversations/{conversation_id:int}/messages", reply, methods=["POST"]),
    Route("/conversations/{conversation_id:int}/{action}", change_status, methods=["POST"]),
]
