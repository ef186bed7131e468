"""CORS for the widget API: pages on a site's allowed origins may call it directly.

The widget's own iframe is same-origin and needs none of this; it is for integrators who
call the endpoints from their pages. Pure ASGI, so streams pass through untouched.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat.errors import Invalid
from chat.expiring import Expiring
from chat.queries import sites as site_queries
from chat.services import Services
from chat.sites import Site, normalize_origin
from chat.web.security import from_this_site

ALLOWED_HEADERS = "Content-Type, X-Visitor-Token, HX-Request, Last-Event-ID"
REFUSED = "This origin may not use this site's chat; add it to the site's allowed origins."
CACHE_SECONDS = 30.0


class WidgetCors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._sites: Expiring[str, Site | None] = Expiring(CACHE_SECONDS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # On the hot path of every widget message: look for Origin without building Headers.
        origin = None
        if scope["type"] == "http" and scope["path"].startswith("/widget/"):
            origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"),
                          None)
        if origin is None:
            await self.app(scope, receive, send)
            return
        site = await self._site(scope, scope["path"].split("/")[2])
        allowed = site is not None and _is_origin(origin) and site.allows(origin)
        headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(allowed, origin)(scope, receive, send)
            return
        if not allowed:
            if scope["method"] == "POST" and not from_this_site(headers, self._public_url(scope)):
                # A page on another origin may not write, even where it cannot read.
                await _refused(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = origin
                response_headers["Access-Control-Expose-Headers"] = "X-Visitor-Token"
                response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _public_url(scope: Scope) -> str | None:
        svc: Services = scope["app"].state.services
        return svc.settings.public_url

    @staticmethod
    def _preflight(allowed: bool, origin: str) -> Response:
        if not allowed:
            return Response(REFUSED, status_code=403)
        return Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })

    async def _site(self, scope: Scope, public_key: str) -> Site | None:
        """The site of a key, cached briefly: CORS asks on every cross-origin request."""
        async def load() -> Site | None:
            svc: Services = scope["app"].state.services
            async with svc.pool.acquire() as conn:
                row = await site_queries.by_public_key(conn, public_key)
            return Site.from_row(row) if row else None

        return await self._sites.get(public_key, load)


async def _refused(scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"error": REFUSED}, status_code=403)(scope, receive, send)


def _is_origin(value: str) -> bool:
    try:
        return normalize_origin(value) == value
    except Invalid:
        return False
