"""Admins' pages: sites and their widget settings, the team of agents, canned responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chat.actions import agents as agent_actions
from chat.actions import canned as canned_actions
from chat.actions.sites import create_site, set_identity_verification, update_site
from chat.errors import ChatError, Invalid
from chat.models import Agent
from chat.queries import agents, canned, sites
from chat.services import services
from chat.sites import Site, SiteSettings, embed_snippet
from chat.templating import templates
from chat.web.auth import require_admin
from chat.web.http import Fields, wants_html


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


Change = Callable[[Request, Agent, Fields], Awaitable[object]]


def page(template: str) -> Callable[[Request], Awaitable[Response]]:
    """An admin page, with "Saved." after a successful form post."""

    async def show(request: Request) -> Response:
        await require_admin(request)
        notice = "Saved." if request.query_params.get("saved") else None
        return await _render(request, template, {"notice": notice})

    return show


def form(template: str, path: str, change: Change) -> Callable[[Request], Awaitable[Response]]:
    """A form post by an admin: browsers land on the page again (with the error, if any),
    API callers get JSON."""

    async def post(request: Request) -> Response:
        data = await Fields.of_body(request)
        actor = await require_admin(request, data)
        try:
            await change(request, actor, data)
        except ChatError as error:
            if not wants_html(request):
                raise
            return await _render(request, template, {"error": str(error)}, error.status_code)
        if not wants_html(request):
            return JSONResponse({"ok": True})
        return RedirectResponse(f"{path}?saved=1", status_code=303)

    return post


async def save_site(request: Request, actor: Agent, data: Fields) -> None:
    settings: dict[str, object] = {
        name: data.text(name) for name in SiteSettings.__slots__ if name in data
    }
    settings["offline"] = data.flag("offline")  # an unchecked box sends nothing
    async with services(request).pool.acquire() as conn:
        await update_site(conn, request.path_params["site_id"], name=data.text("name"),
                          origins=data.text("origins"), settings=settings)


async def identity_verification(request: Request, actor: Agent, data: Fields) -> None:
    """``action=on`` makes a new secret (turning verification on, or rotating); ``off``."""
    action = data.text("action")
    if action not in ("on", "off"):
        raise Invalid("Choose on or off.", "action")
    async with services(request).pool.acquire() as conn:
        await set_identity_verification(conn, request.path_params["site_id"], action == "on")


async def add_site(request: Request, actor: Agent, data: Fields) -> None:
    async with services(request).pool.acquire() as conn:
        await create_site(conn, data.text("name"),
                          data.text("origins").replace(",", "\n").split())


async def add_agent(request: Request, actor: Agent, data: Fields) -> None:
    await agent_actions.add_agent(
        services(request), email=data.text("email"), name=data.text("name"),
        password=data.text("password"), role=data.text("role", default="agent"),
    )


async def deactivate(request: Request, actor: Agent, data: Fields) -> None:
    await agent_actions.set_active(services(request), actor, request.path_params["agent_id"],
                                   False)


async def reactivate(request: Request, actor: Agent, data: Fields) -> None:
    await agent_actions.set_active(services(request), actor, request.path_params["agent_id"],
                                   True)


async def change_role(request: Request, actor: Agent, data: Fields) -> None:
    await agent_actions.set_role(services(request), request.path_params["agent_id"],
                                 data.text("role"))


async def add_canned(request: Request, actor: Agent, data: Fields) -> None:
    await canned_actions.create(services(request), actor, data.text("shortcut"),
                                data.text("body"))


async def delete_canned(request: Request, actor: Agent, data: Fields) -> None:
    await canned_actions.delete(services(request), request.path_params["response_id"])


SITES, TEAM, CANNED = "pages/settings.html", "pages/agents.html", "pages/canned.html"
routes = [
    Route("/settings", page(SITES), methods=["GET"]),
    Route("/settings/sites", form(SITES, "/settings", add_site), methods=["POST"]),
    Route("/settings/sites/{site_id:id}", form(SITES, "/settings", save_site),
          methods=["POST"]),
    Route("/settings/sites/{site_id:id}/identity",
          form(SITES, "/settings", identity_verification), methods=["POST"]),
    Route("/agents", page(TEAM), methods=["GET"]),
    Route("/agents", form(TEAM, "/agents", add_agent), methods=["POST"]),
    Route("/agents/{agent_id:id}/deactivate", form(TEAM, "/agents", deactivate),
          methods=["POST"]),
    Route("/agents/{agent_id:id}/reactivate", form(TEAM, "/agents", reactivate),
          methods=["POST"]),
    Route("/agents/{agent_id:id}/role", form(TEAM, "/agents", change_role), methods=["POST"]),
    Route("/canned", page(CANNED), methods=["GET"]),
    Route("/canned", form(CANNED, "/canned", add_canned), methods=["POST"]),
    Route("/canned/{response_id:id}/delete", form(CANNED, "/canned", delete_canned),
          methods=["POST"]),
]
