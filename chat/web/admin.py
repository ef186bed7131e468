"""Admins' pages: sites and their widget settings, the team of agents, canned responses."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chat.actions import agents as agent_actions
from chat.actions import canned as canned_actions
from chat.actions.sites import create_site, update_site
from chat.errors import ChatError
from chat.queries import agents, canned, sites
from chat.services import services
from chat.sites import Site, SiteSettings, embed_snippet
from chat.templating import templates
from chat.web.auth import require_admin
from chat.web.http import fields, wants_html


def _base_url(request: Request) -> str:
    return services(request).settings.public_url or str(request.base_url).rstrip("/")


async def _render(request: Request, page: str, context: dict[str, Any],
                  status_code: int = 200) -> Response:
    svc = services(request)
    async with svc.pool.acquire() as conn:
        context.update(
            sites=[Site.from_row(row) for row in await sites.all_sites(conn)],
            team=await agents.all_agents(conn), canned=await canned.all_responses(conn),
        )
    context.update(agent=request.state.agent, base_url=_base_url(request),
                   embed_snippet=embed_snippet, field_rules=("off", "optional", "required"))
    context.setdefault("notice", None)
    context.setdefault("error", None)
    return templates.TemplateResponse(request, page, context, status_code=status_code)


async def _after(request: Request, page: str, path: str, error: ChatError | None) -> Response:
    """Where a form post lands: the page again with a notice or the error, or JSON."""
    if not wants_html(request):
        if error is not None:
            raise error
        return JSONResponse({"ok": True})
    if error is None:
        return RedirectResponse(f"{path}?saved=1", status_code=303)
    return await _render(request, page, {"error": str(error)}, error.status_code)


async def settings_page(request: Request) -> Response:
    await require_admin(request)
    notice = "Saved." if request.query_params.get("saved") else None
    return await _render(request, "pages/settings.html", {"notice": notice})


async def save_site(request: Request) -> Response:
    data = await fields(request)
    await require_admin(request, data)
    error = None
    try:
        settings = {name: data.get(name) for name in SiteSettings.__slots__ if name in data}
        settings["offline"] = data.get("offline") == "on"
        async with services(request).pool.acquire() as conn:
            await update_site(conn, request.path_params["site_id"], name=str(data.get("name", "")),
                              origins=str(data.get("origins", "")), settings=settings)
    except ChatError as exc:
        error = exc
    return await _after(request, "pages/settings.html", "/settings", error)


async def add_site(request: Request) -> Response:
    data = await fields(request)
    await require_admin(request, data)
    error = None
    try:
        async with services(request).pool.acquire() as conn:
            origins = str(data.get("origins", "")).replace(",", "\n").split()
            await create_site(conn, str(data.get("name", "")), origins)
    except ChatError as exc:
        error = exc
    return await _after(request, "pages/settings.html", "/settings", error)


async def team_page(request: Request) -> Response:
    await require_admin(request)
    notice = "Saved." if request.query_params.get("saved") else None
    return await _render(request, "pages/agents.html", {"notice": notice})


async def add_agent(request: Request) -> Response:
    data = await fields(request)
    await require_admin(request, data)
    error = None
    try:
        async with services(request).pool.acquire() as conn:
            await agent_actions.create_agent(
                conn, email=str(data.get("email", "")), name=str(data.get("name", "")),
                password=str(data.get("password", "")), role=str(data.get("role", "agent")),
            )
    except ChatError as exc:
        error = exc
    return await _after(request, "pages/agents.html", "/agents", error)


async def change_agent(request: Request) -> Response:
    data = await fields(request)
    actor = await require_admin(request, data)
    svc, agent_id = services(request), request.path_params["agent_id"]
    error = None
    try:
        match request.path_params["action"]:
            case "deactivate":
                await agent_actions.set_active(svc, actor, agent_id, False)
            case "reactivate":
                await agent_actions.set_active(svc, actor, agent_id, True)
            case "role":
                await agent_actions.set_role(svc, agent_id, str(data.get("role", "")))
            case _:
                raise ChatError("No such change.")
    except ChatError as exc:
        error = exc
    return await _after(request, "pages/agents.html", "/agents", error)


async def canned_page(request: Request) -> Response:
    await require_admin(request)
    notice = "Saved." if request.query_params.get("saved") else None
    return await _render(request, "pages/canned.html", {"notice": notice})


async def add_canned(request: Request) -> Response:
    data = await fields(request)
    actor = await require_admin(request, data)
    error = None
    try:
        await canned_actions.create(services(request), actor, data.get("shortcut"),
                                    data.get("body"))
    except ChatError as exc:
        error = exc
    return await _after(request, "pages/canned.html", "/canned", error)


async def delete_canned(request: Request) -> Response:
    data = await fields(request)
    await require_admin(request, data)
    error = None
    try:
        await canned_actions.delete(services(request), request.path_params["response_id"])
    except ChatError as exc:
        error = exc
    return await _after(request, "pages/canned.html", "/canned", error)


routes = [
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings/sites", add_site, methods=["POST"]),
    Route("/settings/sites/{site_id:int}", save_site, methods=["POST"]),
    Route("/agents", team_page, methods=["GET"]),
    Route("/agents", add_agent, methods=["POST"]),
    Route("/agents/{agent_id:int}/{action}", change_agent, methods=["POST"]),
    Route("/canned", canned_page, methods=["GET"]),
    Route("/canned", add_canned, methods=["POST"]),
    Route("/canned/{response_id:int}/delete", delete_canned, methods=["POST"]),
]
