"""The visitor's side: the loader script, the iframe page, conversations and their stream.

A visitor is identified by the token in the ``X-Visitor-Token`` header (the loader keeps
it in the host page's storage and hands it to the iframe), never by a cookie, and reaches
only their own conversations: anything else is a 404, so a guessed id reveals nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from asyncpg import Record
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from chat import frames, ratelimit, signals, tokens
from chat.actions import conversations as actions
from chat.actions.conversations import Contact, Sent
from chat.db import Connection
from chat.errors import Forbidden, Invalid, NotFound, Unauthorized
from chat.events import Cursor, conversation_topic
from chat.expiring import Expiring
from chat.frames import Audience
from chat.models import ConversationState
from chat.queries import conversations, messages, visitors
from chat.resources import resource_dir
from chat.roster import TEAM_TOPIC, Team
from chat.services import Services, services
from chat.signals import Awareness, Signal
from chat.sites import Site, normalize_origin
from chat.templating import render, templates
from chat.web.http import MAX_COUNT, Fields, client_address, wants_html
from chat.web.security import content_security_policy
from chat.web.streaming import requested_cursors, sse_response

logger = logging.getLogger(__name__)

TOKEN_HEADER = "x-visitor-token"
PAGE_SIZE = 30
MAX_PAGE_LENGTH = 2000  # a page address or User-Agent kept for the visitor panel


@dataclass(frozen=True, slots=True)
class Access:
    row: Record  # the site's columns, visitor_id and conversation_id
    token: str | None

    @property
    def visitor_id(self) -> int | None:
        visitor_id: int | None = self.row["visitor_id"]
        return visitor_id

    @property
    def conversation_id(self) -> int | None:
        conversation_id: int | None = self.row["conversation_id"]
        return conversation_id

    @property
    def site(self) -> Site:
        # Built only by the routes that need it: messages and streams, the hot paths, don't.
        return Site.from_row(self.row)


async def authorize(request: Request, *, conversation: bool = False,
                    visitor: bool = False) -> Access:
    """Who is asking, checked in one query: the site in the path, the visitor of the token
    header (required with ``visitor``), and with ``conversation`` that the visitor owns the
    one in the path."""
    token = request.headers.get(TOKEN_HEADER)
    conversation_id = request.path_params.get("conversation_id") if conversation else None
    async with services(request).pool.acquire() as conn:
        row = await visitors.access(conn, request.path_params["site_key"],
                                    tokens.token_hash(token) if token else None, conversation_id)
    if row is None:
        raise NotFound("This chat is not available: the site key is unknown or disabled.")
    if token and row["visitor_id"] is None:
        raise Unauthorized("This visitor token is not valid here; start a new conversation.")
    if (conversation or visitor) and row["visitor_id"] is None:
        raise Unauthorized("A visitor token is required.")
    if conversation and row["conversation_id"] is None:
        raise NotFound("No such conversation.")
    return Access(row, token)


async def loader(request: Request) -> Response:
    """``/widget.js``: small, cacheable, the same for every site."""
    return FileResponse(resource_dir("widget") / "loader.js", media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=600"})


async def look(request: Request) -> Response:
    """The site's colours, for the loader to paint its launcher before any frame exists.

    Public (any page may read a site's colour), so any origin may fetch it; a plain GET needs
    no preflight. Cached briefly so a colour change shows within a minute."""
    settings = (await authorize(request)).site.settings
    return JSONResponse({"color": settings.color, "ink": settings.ink},
                        headers={"Access-Control-Allow-Origin": "*",
                                 "Cache-Control": "public, max-age=60"})


async def frame(request: Request) -> Response:
    """The iframe page. Only the site's own origins may frame it (CSP frame-ancestors)."""
    access = await authorize(request)
    site = access.site
    try:
        origin = normalize_origin(request.query_params.get("origin", ""))
    except Invalid:
        raise Invalid("The page embedding the chat did not say its origin.", "origin") from None
    if not site.allows(origin):
        raise Forbidden(f"{origin} may not embed this chat; add it to the site's origins.")
    svc = services(request)
    response = templates.TemplateResponse(request, "pages/widget.html", {
        "site": site, "settings": site.settings, "origin": origin,
        "online": team_online(svc, site),
    })
    response.headers["Content-Security-Policy"] = content_security_policy(
        site.frame_ancestors, svc.settings.htmx_url)
    return response


async def current(request: Request) -> Response:
    """The visitor's conversation (``?id=`` or the latest), or the welcome for a new one."""
    access = await authorize(request)
    requested = Fields.of_query(request).number("id")
    online = team_online(services(request), access.site)
    if access.visitor_id is None or request.query_params.get("new"):
        return _welcome(access, has_past=access.visitor_id is not None, online=online)
    async with services(request).pool.acquire() as conn:
        state = await conversations.latest_of_visitor(conn, access.visitor_id, requested)
        if state is None:
            if requested is not None:
                raise NotFound("No such conversation.")
            return _welcome(access, has_past=False, online=online)
        entries = await messages.before(conn, state.id, None, PAGE_SIZE, notes=False)
    return _conversation_view(state, entries)


def _welcome(access: Access, *, has_past: bool, online: bool) -> Response:
    site = access.site
    return HTMLResponse(render("partials/widget_welcome.html", site=site,
                               settings=site.settings, has_past=has_past, online=online))


def team_online(svc: Services, site: Site) -> bool:
    """Whether anyone answers now: else the widget says "Away" and asks for an email."""
    return not site.settings.offline and (svc.roster is None or svc.roster.team.online)


def _conversation_view(state: ConversationState, entries: list[Any], status_code: int = 200,
                       new_token: str | None = None) -> Response:
    html = render("partials/widget_conversation.html", conversation=state, entries=entries,
                  audience="visitor")
    headers = {"X-Visitor-Token": new_token} if new_token else None
    return HTMLResponse(html, status_code=status_code, headers=headers)


async def past(request: Request) -> Response:
    """The visitor's conversations, newest first."""
    access = await authorize(request, visitor=True)
    assert access.visitor_id is not None
    async with services(request).pool.acquire() as conn:
        states = await conversations.of_visitor(conn, access.visitor_id, 50)
    return HTMLResponse(render("partials/widget_past.html", conversations=states))


async def older(request: Request) -> Response:
    """Entries before ``?before=SEQ``, for scrolling up through a long history."""
    access = await authorize(request, conversation=True)
    assert access.conversation_id is not None
    before = Fields.of_query(request).number("before")
    async with services(request).pool.acquire() as conn:
        entries = await messages.before(conn, access.conversation_id, before, PAGE_SIZE,
                                        notes=False)
    return HTMLResponse(render("partials/widget_older.html", entries=entries,
                               audience="visitor"))


def sent_response(request: Request, sent: Sent) -> Response:
    status = 201 if sent.created else 200
    if wants_html(request):
        html = render("partials/entry.html", entry=sent.entry, audience="visitor")
        return HTMLResponse(html, status_code=status)
    return JSONResponse({"conversation": {"id": sent.conversation.id,
                                          "status": sent.conversation.status},
                         "message": _message_json(sent)}, status_code=status)


def _message_json(sent: Sent) -> dict[str, Any]:
    entry = sent.entry
    return {**entry.to_json(), "cursor": str(Cursor(entry.conversation_id, entry.seq))}


async def start_conversation(request: Request) -> Response:
    access = await authorize(request)
    svc = services(request)
    data = await Fields.of_body(request)
    contact = Contact.clean(data.optional_text("name"), data.optional_text("email"), {
        "page": data.optional_text("page", max_length=MAX_PAGE_LENGTH),
        "user_agent": _user_agent(request),
    })
    site = access.site
    contact = _verify(site, contact, data.text("identity_hash"))
    _require_prechat(site, contact)
    text = actions.clean_body(data.text("body"))  # bad input never counts as an attempt
    client_id = actions.clean_client_id(data.optional_text("client_id"))
    client = client_address(request)
    await svc.limiter.hit(ratelimit.CONVERSATIONS_PER_IP, "ip", client)
    if access.visitor_id is not None:
        await svc.limiter.hit(ratelimit.CONVERSATIONS_PER_VISITOR, "visitor",
                              str(access.visitor_id))
    started = await actions.start(
        svc, site_id=site.id, visitor_id=access.visitor_id, body=text, client_id=client_id,
        contact=contact,
    )
    if wants_html(request):
        return _conversation_view(started.conversation, [started.entry],
                                  201 if started.created else 200, started.visitor_token)
    body: dict[str, Any] = {
        "conversation": {"id": started.conversation.id, "status": started.conversation.status},
        "message": _message_json(started),
    }
    if started.visitor_token is not None:
        body["visitor_token"] = started.visitor_token
    return JSONResponse(body, status_code=201 if started.created else 200)


async def identity(request: Request) -> Response:
    """``ChatWidget.identify`` for a visitor who already exists (a chat under way): the name
    and email agents see change now, not at the next conversation; the hash verifies as at a
    start. What is not given is kept."""
    access = await authorize(request, visitor=True)
    assert access.visitor_id is not None
    data = await Fields.of_body(request)
    contact = Contact.clean(data.optional_text("name"), data.optional_text("email"))
    contact = _verify(access.site, contact, data.text("identity_hash"))
    svc = services(request)
    await svc.limiter.hit(ratelimit.SIGNALS_PER_VISITOR, "visitor", str(access.visitor_id))
    async with svc.pool.acquire() as conn:
        await visitors.update_contact(conn, access.visitor_id, name=contact.name,
                                      email=contact.email,
                                      verified_email=contact.verified_email,
                                      proof_secret=contact.proof_secret)
    return Response(status_code=204)


def _user_agent(request: Request) -> str | None:
    """The browser's User-Agent, shortened, for the agent's visitor panel."""
    value = "".join(c for c in request.headers.get("user-agent", "") if c.isprintable())
    return value[:MAX_PAGE_LENGTH] or None


def _verify(site: Site, contact: Contact, signature: str) -> Contact:
    """The contact, marked verified when the site's server signed its email.

    A wrong signature is the integrator's bug, not the visitor's: they still get to chat,
    unverified, and the log says why.
    """
    if not contact.email or not signature:
        return contact
    if site.verifies(contact.email, signature):
        return dataclasses.replace(contact, proof_secret=site.identity_secret)
    logger.warning("Site %s: an identity hash does not match the visitor's email, so they "
                   "chat unverified. Sign emails with the site's current identity secret "
                   "(Sites page), or turn verification on there.", site.public_key)
    return contact


def _require_prechat(site: Site, contact: Contact) -> None:
    settings = site.settings
    if settings.prechat_name == "required" and not contact.name:
        raise Invalid("Please tell us your name.", "name")
    if settings.email_rule == "required" and not contact.email:
        raise Invalid("Please leave your email so that we can answer.", "email")


async def send_message(request: Request) -> Response:
    access = await authorize(request, conversation=True)
    data = await Fields.of_body(request)
    assert access.conversation_id is not None and access.visitor_id is not None
    svc = services(request)
    text = actions.clean_body(data.text("body"))  # bad input never counts as an attempt
    client_id = actions.clean_client_id(data.optional_text("client_id"))
    client = client_address(request)
    await svc.limiter.hit(ratelimit.MESSAGES_PER_CONVERSATION, "conversation",
                          str(access.conversation_id))
    await svc.limiter.hit(ratelimit.MESSAGES_PER_VISITOR, "visitor", str(access.visitor_id))
    await svc.limiter.hit(ratelimit.MESSAGES_PER_IP, "ip", client)
    sent = await actions.send(svc, access.conversation_id, body=text, client_id=client_id)
    # The message ends the visitor's typing for streams yet to open too.
    await signals.remember(svc.presence, Signal(access.conversation_id, access.row["id"],
                                                "stopped", "visitor", ""))
    return sent_response(request, sent)


# Typing refreshes every couple of seconds per visitor, and checking the visitor's access
# each time was the signal's main cost: a check reused for as long as a typing indicator
# lasts unrefreshed (signals.TYPING_TTL) means a disabled site or a revoked token shows no
# more than one indicator past its time. Everything but typing checks at every request.
TYPING_ACCESS: Expiring[tuple[str, str | None, int], Access] = Expiring(signals.TYPING_TTL)


async def typing(request: Request) -> Response:
    """The visitor is typing (``typing=1``, again every couple of seconds with ``refresh=1``)
    or stopped."""
    params = request.path_params
    access = await TYPING_ACCESS.get(
        (params["site_key"], request.headers.get(TOKEN_HEADER), params["conversation_id"]),
        lambda: authorize(request, conversation=True))
    assert access.conversation_id is not None and access.visitor_id is not None
    data = await Fields.of_body(request)
    svc = services(request)
    await svc.limiter.hit(ratelimit.SIGNALS_PER_VISITOR, "visitor", str(access.visitor_id))
    await signals.pass_on(svc.broker, svc.presence, svc.relay, Signal(
        access.conversation_id, access.row["id"], "typing" if data.flag("typing") else "stopped",
        "visitor", access.row["visitor_name"] or ""), refresh=data.flag("refresh"))
    return Response(status_code=204)


@dataclass
class VisitorView:
    """A visitor's stream: the public history and status of some of their conversations
    (every one that their tabs show, when one tab holds the stream for all)."""

    watched: tuple[int, ...]
    forced_away: bool = False  # the site says its team is away, whoever is online
    audience: ClassVar[Audience] = "visitor"
    row_topics: ClassVar[tuple[str, ...]] = ()  # no inbox

    @property
    def topics(self) -> list[str]:
        return [*(conversation_topic(id_) for id_ in self.watched), TEAM_TOPIC]

    async def snapshot(self, conn: Connection) -> tuple[list[bytes], list[ConversationState]]:
        states = await conversations.states(conn, self.watched)
        return [frame for state in states for frame in self.state_frames(state)], states

    def state_frames(self, state: ConversationState) -> list[bytes]:
        return [frames.status(state, "visitor")] if state.id in self.watched else []

    def hears(self, signal: Signal) -> bool:
        return signal.conversation_id in self.watched and signal.side == "agent"

    def awareness_frames(self, conversation_id: int, awareness: Awareness) -> list[bytes]:
        return [frames.awareness(conversation_id, "visitor", awareness.of(conversation_id))]

    def team_frames(self, team: Team) -> list[bytes]:
        return [frames.team(team, "visitor", forced_away=self.forced_away)]


def visitor_stream(request: Request, access: Access,
                   cursors: dict[int, Cursor | None]) -> Response:
    """The stream of ``cursors``' conversations; while it is open the visitor is on a page
    (see chat.roster)."""
    assert access.visitor_id is not None
    visitor_id, site = access.visitor_id, access.site
    roster = services(request).roster

    def opened() -> Callable[[], None]:
        assert roster is not None
        closers = [roster.visitor_opened(visitor_id, Signal(
            id_, site.id, "here", "visitor", access.row["visitor_name"] or "")) for id_ in cursors]
        def closed() -> None:
            for close in closers:
                close()
        return closed
    return sse_response(request, VisitorView(tuple(cursors), site.settings.offline), cursors,
                        client=f"visitor:{visitor_id}", opened=opened if roster else None)


async def page(request: Request) -> Response:
    """The visitor opened the widget on ``page`` (each page load, as it has no timer)."""
    access = await authorize(request, conversation=True)
    assert access.conversation_id is not None and access.visitor_id is not None
    data = await Fields.of_body(request)
    where = data.text("page", max_length=MAX_PAGE_LENGTH)
    svc = services(request)
    await svc.limiter.hit(ratelimit.SIGNALS_PER_VISITOR, "visitor", str(access.visitor_id))
    async with svc.pool.acquire() as conn:
        await visitors.seen(conn, access.visitor_id, where)
    await signals.publish(svc.broker, svc.presence, Signal(
        access.conversation_id, access.site.id, "here", "visitor",
        access.row["visitor_name"] or "", page=where))
    return Response(status_code=204)


async def read(request: Request) -> Response:
    """The visitor saw the conversation up to entry ``seq`` in a visible widget."""
    access = await authorize(request, conversation=True)
    assert access.conversation_id is not None and access.visitor_id is not None
    seq = (await Fields.of_body(request)).number("seq", maximum=MAX_COUNT) or 0
    svc = services(request)
    await svc.limiter.hit(ratelimit.SIGNALS_PER_VISITOR, "visitor", str(access.visitor_id))
    actions.visitor_read(svc, access.conversation_id, seq)
    return Response(status_code=204)


async def end(request: Request) -> Response:
    """The visitor ends the chat ("End chat"): closed for the agents too, live, and said in
    the history. Ending a closed one again changes nothing and is no error."""
    access = await authorize(request, conversation=True)
    assert access.conversation_id is not None and access.visitor_id is not None
    svc = services(request)
    await svc.limiter.hit(ratelimit.SIGNALS_PER_VISITOR, "visitor", str(access.visitor_id))
    state = await actions.close(svc, access.conversation_id, None)
    if not wants_html(request):
        return JSONResponse({"conversation": {"id": state.id, "status": state.status}})
    # The closed view at once, with its offer of a new conversation: the stream may be down.
    async with svc.pool.acquire() as conn:
        entries = await messages.before(conn, state.id, None, PAGE_SIZE, notes=False)
    return _conversation_view(state, entries)


async def stream(request: Request) -> Response:
    """One conversation's stream (``?after=SEQ`` or ``Last-Event-ID``)."""
    access = await authorize(request, conversation=True)
    assert access.conversation_id is not None
    cursors = requested_cursors(request, access.conversation_id)
    return visitor_stream(request, access, cursors)


async def shared_stream(request: Request) -> Response:
    """The visitor's stream for every conversation in ``?watch=C-S,...``: what one tab
    holds for all the visitor's tabs of a browser (see static/live.js)."""
    access = await authorize(request, visitor=True)
    assert access.visitor_id is not None
    cursors = requested_cursors(request)
    if cursors:
        async with services(request).pool.acquire() as conn:
            owned = await conversations.owned_by(conn, access.visitor_id, cursors.keys())
        if len(owned) < len(cursors):
            raise NotFound("No such conversation.")  # whose it is, or whether it exists
    return visitor_stream(request, access, cursors)


PREFIX = "/widget/{site_key}"
routes = [
    Route("/widget.js", loader, methods=["GET"]),
    Route(PREFIX + "/frame", frame, methods=["GET"]),
    Route(PREFIX + "/look", look, methods=["GET"]),
    Route(PREFIX + "/conversation", current, methods=["GET"]),
    Route(PREFIX + "/conversations", past, methods=["GET"]),
    Route(PREFIX + "/conversations", start_conversation, methods=["POST"]),
    Route(PREFIX + "/identity", identity, methods=["POST"]),
    Route(PREFIX + "/conversations/{conversation_id:id}/messages", send_message,
          methods=["POST"]),
    Route(PREFIX + "/conversations/{conversation_id:id}/older", older, methods=["GET"]),
    Route(PREFIX + "/conversations/{conversation_id:id}/typing", typing, methods=["POST"]),
    Route(PREFIX + "/conversations/{conversation_id:id}/page", page, methods=["POST"]),
    Route(PREFIX + "/conversations/{conversation_id:id}/read", read, methods=["POST"]),
    Route(PREFIX + "/conversations/{conversation_id:id}/close", end, methods=["POST"]),
    Route(PREFIX + "/conversations/{conversation_id:id}/stream", stream, methods=["GET"]),
    Route(PREFIX + "/stream", shared_stream, methods=["GET"]),
]
