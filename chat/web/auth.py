"""Agents' accounts: first-run set-up, sign-in and sign-out, their own profile, and the
session check (with CSRF) that every dashboard route makes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chat import passwords, ratelimit, tokens, validation
from chat.actions import agents as agent_actions
from chat.actions import sessions as session_actions
from chat.actions.sessions import SignedIn
from chat.errors import ChatError, Forbidden, NotFound, Unauthorized
from chat.models import Agent, Alerts
from chat.queries import agents, sessions
from chat.services import services
from chat.templating import templates
from chat.web.http import Fields, client_address, error_response, wants_html
from chat.web.security import from_this_site

SESSION_COOKIE = "chat_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Unauthorized):
    """No valid session: pages redirect to sign-in, htmx is told to, APIs get 401."""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in dashboard session: who, its CSRF token, when it ends, and how the agent
    wants to be alerted (read with the session: every dashboard page shows it)."""

    agent: Agent
    csrf: str
    token_hash: bytes
    expires_at: datetime
    alerts: Alerts


async def current_session(conn: HTTPConnection) -> Session | None:
    """The session of the request's cookie, if it is still valid."""
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    token_hash = tokens.token_hash(token)
    async with services(conn).pool.acquire() as db:
        row = await sessions.agent_for(db, token_hash)
    if row is None:
        return None
    agent = Agent(id=row["id"], name=row["name"], email=row["email"], role=row["role"])
    return Session(agent, row["csrf_token"], token_hash, row["expires_at"],
                   Alerts(row["alerts"], row["alert_sound"]))


async def require_agent(request: Request, form: Fields | None = None) -> Agent:
    """The signed-in agent; unsafe methods must also echo the session's CSRF token.

    The session is kept on ``request.state.session`` and its CSRF token on
    ``request.state.csrf`` for pages to embed.
    """
    session = await current_session(request)
    if session is None:
        raise SignInRequired("Sign in to continue.")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER) or (form.text("csrf_token") if form else "")
        if not tokens.same(sent, session.csrf):
            raise Forbidden("The form expired or came from another site; reload and try again.")
    request.state.agent, request.state.csrf = session.agent, session.csrf
    request.state.session = session
    return session.agent


async def require_admin(request: Request, form: Fields | None = None) -> Agent:
    agent = await require_agent(request, form)
    if not agent.is_admin:
        raise Forbidden("Only admins can do this.")
    return agent


async def handle_sign_in_required(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request") == "true":
        return error_response(request, 401, str(exc), headers={"HX-Redirect": "/login"})
    if wants_html(request) and request.method == "GET":
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return error_response(request, 401, str(exc))


def _local(path: str | None) -> str:
    """A path on this site to go to after signing in; never another site (open redirect)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/"


def _signed_in(request: Request, signed_in: SignedIn, next_path: str) -> Response:
    response: Response
    if wants_html(request):
        response = RedirectResponse(_local(next_path), status_code=303)
    else:
        response = JSONResponse({
            "agent": {"id": signed_in.agent.id, "name": signed_in.agent.name,
                      "role": signed_in.agent.role},
            "csrf_token": signed_in.csrf_token,
        })
    response.set_cookie(
        SESSION_COOKIE, signed_in.token, expires=signed_in.expires_at, httponly=True,
        samesite="lax", secure=_behind_tls(request), path="/",
    )
    return response


def _behind_tls(request: Request) -> bool:
    public_url = services(request).settings.public_url or ""
    return request.url.scheme == "https" or public_url.startswith("https://")


async def _no_agents(request: Request) -> bool:
    async with services(request).pool.acquire() as conn:
        return await agents.count(conn) == 0


async def login_page(request: Request) -> Response:
    if await _no_agents(request):
        return RedirectResponse("/setup", status_code=303)
    return templates.TemplateResponse(request, "pages/login.html", {
        "error": None, "email": "", "next": _local(request.query_params.get("next")),
    })


def _refuse_cross_site(request: Request) -> None:
    """Login CSRF: a form on another site must not sign this browser in (to the
    attacker's account, to read what the victim then types)."""
    if not from_this_site(request.headers, services(request).settings.public_url):
        raise Forbidden("Signing in from another site is not allowed; open the sign-in "
                        "page of the chat itself.")


async def login(request: Request) -> Response:
    _refuse_cross_site(request)
    data = await Fields.of_body(request)
    next_path = _local(data.text("next", max_length=2000))
    email = ""
    try:
        email = data.text("email", max_length=validation.MAX_EMAIL_LENGTH)
        password = data.text("password", max_length=passwords.MAX_LENGTH)
        signed_in = await _sign_in(request, email, password)
    except ChatError as exc:
        if not wants_html(request):
            raise
        return templates.TemplateResponse(
            request, "pages/login.html", {"error": str(exc), "email": email, "next": next_path},
            status_code=exc.status_code,
        )
    return _signed_in(request, signed_in, next_path)


async def _sign_in(request: Request, email: str, password: str) -> SignedIn:
    """Sign in, throttling failures per address (so changing the email each time does not
    help) and per address and email (so one account is not guessed at)."""
    svc = services(request)
    client = client_address(request)
    per_address = ("signin", client)
    per_account = ("signin", client, email.strip().lower())
    await svc.limiter.check(ratelimit.SIGN_INS_PER_ADDRESS, *per_address)
    await svc.limiter.check(ratelimit.SIGN_INS, *per_account)
    try:
        return await session_actions.sign_in(svc, email, password)
    except Unauthorized:
        await svc.limiter.hit(ratelimit.SIGN_INS_PER_ADDRESS, *per_address)  # failures count
        await svc.limiter.hit(ratelimit.SIGN_INS, *per_account)
        raise


async def logout(request: Request) -> Response:
    await require_agent(request, await Fields.of_body(request))
    await session_actions.sign_out(services(request), request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def setup_page(request: Request) -> Response:
    if not await _no_agents(request):
        raise NotFound("Set-up is done: sign in instead.")
    return templates.TemplateResponse(request, "pages/setup.html", {"error": None, "data": {}})


async def setup(request: Request) -> Response:
    """Create the first admin, once, then sign them in."""
    _refuse_cross_site(request)
    data = await Fields.of_body(request)
    svc = services(request)
    shown = {"email": "", "name": ""}
    try:
        shown = {"email": data.text("email"), "name": data.text("name")}
        password = data.text("password")
        await agent_actions.create_first_admin(svc, password=password, **shown)
    except ChatError as exc:
        if not wants_html(request) or exc.status_code == 404:
            raise
        return templates.TemplateResponse(request, "pages/setup.html",
                                          {"error": str(exc), "data": shown},
                                          status_code=exc.status_code)
    signed_in = await session_actions.sign_in(svc, shown["email"], password)
    return _signed_in(request, signed_in, "/inbox")


async def profile_page(request: Request) -> Response:
    agent = await require_agent(request)
    return templates.TemplateResponse(request, "pages/profile.html",
                                      {"agent": agent, "notice": None, "error": None})


async def profile(request: Request) -> Response:
    data = await Fields.of_body(request)
    agent = await require_agent(request, data)
    svc = services(request)
    notice, error = None, None
    try:
        if "new_password" in data:
            await agent_actions.change_password(
                svc, agent, data.text("current_password"), data.text("new_password"),
                request.state.session.token_hash)
            notice = "Your password is changed."
        else:
            row = await agent_actions.rename(svc, agent, data.text("name"))
            agent = Agent(id=agent.id, name=row["name"], email=agent.email, role=agent.role)
            notice = "Saved."
    except ChatError as exc:
        if not wants_html(request):
            raise
        error = str(exc)
    if not wants_html(request):
        return JSONResponse({"ok": True})
    return templates.TemplateResponse(request, "pages/profile.html",
                                      {"agent": agent, "notice": notice, "error": error},
                                      status_code=422 if error else 200)


routes = [
    Route("/setup", setup_page, methods=["GET"]),
    Route("/setup", setup, methods=["POST"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/profile", profile_page, methods=["GET"]),
    Route("/profile", profile, methods=["POST"]),
]
