"""What every route shares: reading input, answering in HTML or JSON, rendering errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat import db
from chat.errors import ChatError, Invalid, RateLimited
from chat.services import services
from chat.templating import render

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def wants_html(request: Request) -> bool:
    """htmx asked, or a browser navigated; API clients get JSON."""
    if request.headers.get("hx-request") == "true":
        return True
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


async def fields(request: Request) -> dict[str, Any]:
    """The request's fields, from a JSON object or a form."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise Invalid("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise Invalid("The body must be a JSON object.")
        return data
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise Invalid(f"{name} must be a positive whole number.", name)
    return int(value)


def error_response(request: Request, status: int, message: str,
                   field: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
    if wants_html(request):
        # htmx swaps a fragment in; a browser that navigated here gets a whole page.
        fragment = request.headers.get("hx-request") == "true"
        html = render("partials/error.html" if fragment else "pages/error.html",
                      message=message, field=field, status=status)
        return HTMLResponse(html, status_code=status, headers=headers)
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


async def handle_chat_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChatError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    field = exc.field if isinstance(exc, Invalid) else None
    return error_response(request, exc.status_code, str(exc), field, headers)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else "Not found."
    return error_response(request, exc.status_code, message, headers=exc.headers)


EXCEPTION_HANDLERS = {ChatError: handle_chat_error, HTTPException: handle_http_error}

RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "The chat is briefly unavailable. Please try again in a few seconds."


class DatabaseOutage:
    """Answer 503 with ``Retry-After`` to a request that failed because PostgreSQL is down.

    Pure ASGI around everything that reads the database, middleware included (the widget's
    CORS reads sites), which Starlette's exception handlers do not cover. A request that
    fails for any other reason, a bad query included, still surfaces as the bug it is. A
    stream that loses the database after it started ends itself (see ``StreamResponse``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except db.OUTAGE_ERRORS as exc:
            if started or not db.is_unavailable(exc):
                raise
            db.report_unavailable(services(Request(scope)).pool, exc)
            response = error_response(Request(scope), 503, UNAVAILABLE,
                                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            await response(scope, receive, send)


class BodySizeLimit:
    """Refuse request bodies over a limit with 413, before a handler buffers them.

    Pure ASGI (not BaseHTTPMiddleware), so streaming responses pass through untouched.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit
        self.message = f"The request body is over {limit // 1024} KiB."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = JSONResponse(
            {"error": self.message}, status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, _drained, send)


async def _drained() -> Message:
    return {"type": "http.disconnect"}
