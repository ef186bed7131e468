"""The agent's side: the inbox and conversation pages, replies, notes, status changes, and
the stream that keeps all of it live (one per browser: one tab holds it for the others)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chat import frames, signals
from chat.actions import conversations as actions
from chat.actions.conversations import StaleState
from chat.db import Connection
from chat.errors import Invalid, NotFound
from chat.events import agent_topic, session_topic, site_topic
from chat.frames import Audience
from chat.models import ALERT_LEVELS, Agent, Alerts, ConversationState
from chat.queries import agents, canned, conversations, messages, sites, visitors
from chat.roster import TEAM_TOPIC, Team
from chat.services import Services, services
from chat.signals import AGENT_KINDS, Awareness, Side, Signal, on_page
from chat.tabs import TABS, Inbox, TabName
from chat.templating import render, templates
from chat.web.auth import Session, require_agent
from chat.web.http import MAX_COUNT, Fields, wants_html
from chat.web.streaming import requested_cursors, sse_response

INBOX_SIZE = 500
MAX_QUERY_LENGTH = 200
HISTORY_PAGE = 50


def _tab(request: Request) -> TabName:
    return Fields.of_query(request).choice("tab", TABS, default="waiting")


async def home(request: Request) -> Response:
    await require_agent(request)
    return RedirectResponse("/inbox", status_code=303)


async def inbox_page(request: Request) -> Response:
    agent = await require_agent(request)
    return await _page(request, agent, None)


async def conversation_page(request: Request) -> Response:
    agent = await require_agent(request)
    return await _page(request, agent, request.path_params["conversation_id"])


async def _page(request: Request, agent: Agent, conversation_id: int | None) -> Response:
    tab = _tab(request)
    query = Fields.of_query(request).text("q", max_length=MAX_QUERY_LENGTH).strip()
    svc, opened = services(request), None
    if conversation_id is not None:
        async with svc.pool.acquire() as conn:
            opened = await _open_conversation(conn, conversation_id)
        recalled = await signals.recall(svc.presence, [conversation_id])
        opened["online"] = any(signal.kind == "here" for signal in recalled)
        await actions.mark_read(svc, agent, conversation_id, opened["state"].visitor_messages)
    async with svc.pool.acquire() as conn:
        rows = (await conversations.search(conn, query, 100) if query else
                await conversations.inbox(conn, TABS[tab].inbox, limit=INBOX_SIZE))
        reads = await conversations.reads(conn, agent.id)
    return templates.TemplateResponse(request, "pages/inbox.html", {
        "agent": agent, "tab": tab, "tabs": TABS, "query": query, "conversations": rows,
        "reads": reads, "open": opened, "alerts": request.state.session.alerts,
        "alert_levels": ALERT_LEVELS,
        "team": svc.roster.team if svc.roster else Team(),
    })


async def _open_conversation(conn: Connection, conversation_id: int) -> dict[str, Any]:
    state = await conversations.state(conn, conversation_id)
    if state is None:
        raise NotFound("No such conversation.")
    entries = await messages.before(conn, conversation_id, None, HISTORY_PAGE, notes=True)
    return {
        "state": state, "entries": entries,
        "visitor": await visitors.profile(conn, state.visitor_id),
        "past": [c for c in await conversations.of_visitor(conn, state.visitor_id, 20)
                 if c.id != state.id],
        "agents": [a for a in await agents.all_agents(conn) if a["active"]],
        "canned": await canned.all_responses(conn),
    }


async def older(request: Request) -> Response:
    await require_agent(request)
    conversation_id = request.path_params["conversation_id"]
    before = Fields.of_query(request).number("before")
    async with services(request).pool.acquire() as conn:
        entries = await messages.before(conn, conversation_id, before, HISTORY_PAGE, notes=True)
    return HTMLResponse(render("partials/widget_older.html", entries=entries,
                               audience="agent"))


async def mark_read(request: Request) -> Response:
    data = await Fields.of_body(request)
    agent = await require_agent(request, data)
    count = data.number("count", maximum=MAX_COUNT) or 0
    seq = data.number("seq", maximum=MAX_COUNT) or 0
    await actions.mark_read(services(request), agent, request.path_params["conversation_id"],
                            count, seq)
    return Response(status_code=204)


async def reply(request: Request) -> Response:
    data = await Fields.of_body(request)
    agent = await require_agent(request, data)
    sent = await actions.send(
        services(request), request.path_params["conversation_id"], body=data.text("body"),
        client_id=data.optional_text("client_id"), agent=agent, note=data.flag("note"),
    )
    state = sent.conversation  # the reply ends its typing for streams yet to open too
    await signals.remember(services(request).presence, Signal(
        state.id, state.site_id, "stopped", "agent", agent.name, agent.id))
    status = 201 if sent.created else 200
    if wants_html(request):
        return HTMLResponse(render("partials/entry.html", entry=sent.entry, audience="agent"),
                            status_code=status)
    return JSONResponse({"conversation": sent.conversation.to_json(),
                         "message": sent.entry.to_json()}, status_code=status)


async def signal(request: Request) -> Response:
    """This agent is viewing the conversation (again every ``VIEWING_REFRESH`` seconds), typing
    a reply or a private note (``note=1``; ``refresh=1`` when repeated), stopped typing, or
    left."""
    data = await Fields.of_body(request)
    agent = await require_agent(request, data)
    kind = data.choice("kind", AGENT_KINDS)
    svc = services(request)
    async with svc.pool.acquire() as conn:
        state = await conversations.state(conn, request.path_params["conversation_id"])
    if state is None:
        raise NotFound("No such conversation.")
    side: Side = "note" if data.flag("note") else "agent"
    await signals.pass_on(svc.broker, svc.presence, svc.relay,
                          Signal(state.id, state.site_id, kind, side, agent.name, agent.id),
                          refresh=data.flag("refresh"))
    return Response(status_code=204)


StatusChange = Callable[[Services, int, Agent, Fields], Awaitable[ConversationState]]


def status_change(change: StatusChange) -> Callable[[Request], Awaitable[Response]]:
    """A route for claim, close, reopen or assign. A stale change (someone else was first)
    answers 409 with the conversation as it is now, never an error page."""

    async def endpoint(request: Request) -> Response:
        data = await Fields.of_body(request)
        agent = await require_agent(request, data)
        try:
            state = await change(services(request), request.path_params["conversation_id"],
                                 agent, data)
        except StaleState as stale:
            return _state_response(request, stale.conversation, 409, str(stale))
        return _state_response(request, state, 200, None)

    return endpoint


async def _assign(svc: Services, conversation_id: int, agent: Agent,
                  data: Fields) -> ConversationState:
    assignee = data.number("assignee_id") or agent.id
    return await actions.assign(svc, conversation_id, agent, assignee)


def _state_response(request: Request, state: ConversationState, status: int,
                    notice: str | None) -> Response:
    if wants_html(request):
        html = render("partials/conversation_status.html", conversation=state,
                      audience="agent", notice=notice)
        return HTMLResponse(html, status_code=status)
    body: dict[str, Any] = {"conversation": state.to_json()}
    if notice:
        body["error"] = notice
    return JSONResponse(body, status_code=status)


@dataclass
class AgentView:
    """A dashboard stream: inbox rows of every site, the conversations its pages show, and
    the agent's own topic (deactivation ends the stream). One tab may hold it for all the
    agent's tabs of a browser (see static/live.js)."""

    site_ids: list[int]
    agent_id: int
    session_topic: str  # ends the stream when its session ends
    watched: tuple[int, ...]
    inbox: Inbox | None  # None: search pages only, whose rows stay put
    audience: ClassVar[Audience] = "agent"

    @property
    def topics(self) -> list[str]:
        # The sites' topics carry what the open conversations show; rows come from the
        # process's feed (chat.rows), so an inbox alone hears none of the sites' traffic.
        sites = [site_topic(site_id) for site_id in self.site_ids] if self.watched else []
        return [*sites, agent_topic(self.agent_id), self.session_topic, TEAM_TOPIC]

    @property
    def row_topics(self) -> list[str]:
        if self.inbox is None:
            return []
        return [site_topic(site_id) for site_id in self.site_ids]

    async def snapshot(self, conn: Connection) -> tuple[list[bytes], list[ConversationState]]:
        states: list[ConversationState] = []
        batch = []
        if self.inbox is not None:
            states = await conversations.inbox(conn, self.inbox, limit=INBOX_SIZE)
            batch.append(frames.inbox(states))
        listed = {state.id for state in states}
        missing = [id_ for id_ in self.watched if id_ not in listed]
        if missing:
            states = [*states, *await conversations.states(conn, missing)]
        batch += [frames.status(state, "agent") for state in states if state.id in self.watched]
        return batch, states

    def state_frames(self, state: ConversationState) -> list[bytes]:
        return [frames.status(state, "agent")]  # its row comes with all the others

    def hears(self, signal: Signal) -> bool:
        """Everyone else in the conversations its pages show (rows: see chat.rows)."""
        return signal.conversation_id in self.watched and signal.agent_id != self.agent_id

    def awareness_frames(self, conversation_id: int, awareness: Awareness) -> list[bytes]:
        present = awareness.of(conversation_id)
        batch = [frames.awareness(conversation_id, "agent", present)]
        page = on_page(present)
        left_at = awareness.left_at(conversation_id)
        if page is not None or left_at is not None:  # else the panel as rendered holds
            batch.append(frames.visitor_presence(
                conversation_id, page is not None, left_at, page.page if page else ""))
        return batch

    def team_frames(self, team: Team) -> list[bytes]:
        return [frames.team(team, "agent", self.agent_id)]


async def stream(request: Request) -> Response:
    """The inbox (``?inbox=open|closed``, empty for none) and the history of every
    conversation in ``?watch=C-S,...``, plus the one-conversation form
    ``?conversation=ID&after=SEQ`` (or ``Last-Event-ID``)."""
    agent = await require_agent(request)
    inbox = _inbox(request)
    conversation_id = Fields.of_query(request).number("conversation")
    cursors = requested_cursors(request, conversation_id)
    async with services(request).pool.acquire() as conn:
        if cursors and len(await conversations.existing(conn, cursors.keys())) < len(cursors):
            raise NotFound("No such conversation.")
        site_ids = await sites.ids(conn)
    session: Session = request.state.session
    view = AgentView(site_ids, agent.id, session_topic(session.token_hash), tuple(cursors),
                     inbox)
    roster = services(request).roster
    return sse_response(request, view, cursors, client=f"session:{session.token_hash.hex()}",
                        ends_at=session.expires_at.timestamp(),
                        opened=(lambda: roster.agent_opened(agent.id, agent.name))
                        if roster else None)


async def here(request: Request) -> Response:
    """One of the agent's dashboard tabs is visible (when it shows, and every
    ``Roster.here_refresh`` seconds while it does): they are not away."""
    agent = await require_agent(request, await Fields.of_body(request))
    roster = services(request).roster
    if roster is not None:
        await roster.here(agent.id)
    return Response(status_code=204)


async def set_status(request: Request) -> Response:
    """Away or online, by hand (offline is for the server to say)."""
    data = await Fields.of_body(request)
    agent = await require_agent(request, data)
    asked = data.text("status")
    if asked not in ("online", "away"):
        raise Invalid("status must be online or away.", "status")
    roster = services(request).roster
    if roster is not None:
        await roster.set_away(agent.id, asked == "away")
    return Response(status_code=204)


async def set_alerts(request: Request) -> Response:
    """The agent's alert preference (``alerts``: one of ``ALERT_LEVELS``; ``sound``, a
    checkbox), kept on the agent so that it follows them to every browser."""
    data = await Fields.of_body(request)
    agent = await require_agent(request, data)
    chosen = Alerts(data.choice("alerts", ALERT_LEVELS), data.flag("sound"))
    async with services(request).pool.acquire() as conn:
        await agents.set_alerts(conn, agent.id, chosen)
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204)  # the page's form already shows what was chosen
    if wants_html(request):
        return RedirectResponse("/inbox", status_code=303)  # a browser without JavaScript
    return JSONResponse({"alerts": chosen.level, "sound": chosen.sound})


def _inbox(request: Request) -> Inbox | None:
    match request.query_params.get("inbox", "open"):
        case "open":
            return "open"
        case "closed":
            return "closed"
        case "":
            return None
    raise Invalid("inbox must be open, closed, or empty (no inbox rows).", "inbox")


routes = [
    Route("/", home, methods=["GET"]),
    Route("/inbox", inbox_page, methods=["GET"]),
    Route("/stream", stream, methods=["GET"]),
    Route("/presence/here", here, methods=["POST"]),
    Route("/presence/status", set_status, methods=["POST"]),
    Route("/me/alerts", set_alerts, methods=["POST"]),
    Route("/conversations/{conversation_id:id}", conversation_page, methods=["GET"]),
    Route("/conversations/{conversation_id:id}/older", older, methods=["GET"]),
    Route("/conversations/{conversation_id:id}/read", mark_read, methods=["POST"]),
    Route("/conversations/{conversation_id:id}/messages", reply, methods=["POST"]),
    Route("/conversations/{conversation_id:id}/signal", signal, methods=["POST"]),
    Route("/conversations/{conversation_id:id}/claim",
          status_change(lambda svc, c, agent, _: actions.claim(svc, c, agent)), methods=["POST"]),
    Route("/conversations/{conversation_id:id}/close",
          status_change(lambda svc, c, agent, _: actions.close(svc, c, agent)), methods=["POST"]),
    Route("/conversations/{conversation_id:id}/reopen",
          status_change(lambda svc, c, agent, _: actions.reopen(svc, c, agent)),
          methods=["POST"]),
    Route("/conversations/{conversation_id:id}/assign", status_change(_assign),
          methods=["POST"]),
]
