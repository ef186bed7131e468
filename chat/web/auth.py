"""Agent sign-in and sign-out, and the session check every dashboard route makes."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chat import tokens
from chat.actions import sessions as session_actions
from chat.errors import Forbidden, Unauthorized
from chat.models import Agent
from chat.queries import sessions
from chat.services import services
from chat.templating import templates
from chat.web.http import fields, wants_html

SESSION_COOKIE = "chat_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def session_agent(conn: HTTPConnection) -> tuple[Agent, str] | None:
    """The signed-in agent and the session's CSRF token, or None."""
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with services(conn).pool.acquire() as db:
        row = await sessions.agent_for(db, tokens.token_hash(token))
    if row is None:
        return None
    agent = Agent(id=row["id"], name=row["name"], email=row["email"], role=row["role"])
    return agent, row["csrf_token"]


async def require_agent(request: Request, form: dict[str, object] | None = None) -> Agent:
    """The signed-in agent; unsafe methods must also echo the session's CSRF token."""
    found = await session_agent(request)
    if found is None:
        raise Unauthorized("Sign in to continue.")
    agent, csrf = found
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER) or (form or {}).get("csrf_token")
        if not isinstance(sent, str) or not tokens.same(sent, csrf):
            raise Forbidden("The form expired or came from another site; reload and try again.")
    return agent


async def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "pages/login.html", {"error": None})


async def login(request: Request) -> Response:
    data = await fields(request)
    email, password = data.get("email"), data.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise Unauthorized("Wrong email or password.")
    signed_in = await session_actions.sign_in(services(request), email, password)
    response: Response
    if wants_html(request):
        response = RedirectResponse("/", status_code=303)
    else:
        response = JSONResponse({
            "agent": {"id": signed_in.agent.id, "name": signed_in.agent.name,
                      "role": signed_in.agent.role},
            "csrf_token": signed_in.csrf_token,
        })
    response.set_cookie(
        SESSION_COOKIE, signed_in.token, expires=signed_in.expires_at, httponly=True,
        samesite="lax", secure=request.url.scheme == "https", path="/",
    )
    return response


async def logout(request: Request) -> Response:
    await require_agent(request, await fields(request))
    token = request.cookies.get(SESSION_COOKIE, "")
    await session_actions.sign_out(services(request), token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
