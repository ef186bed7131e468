"""What every route shares: reading input, answering in HTML or JSON, rendering errors."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat import db
from chat.errors import ChatError, Invalid, RateLimited
from chat.services import services
from chat.templating import render
from chat.web.security import SecurityHeaders

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
C = TypeVar("C", bound=str)  # one of a field's choices
BODY_TIMEOUT_SECONDS = 30.0


def client_address(conn: HTTPConnection) -> str:
    """The client's IP address, which throttles and stream caps key on. Behind a proxy
    listed in ``FORWARDED_ALLOW_IPS``, uvicorn has already put the forwarded one here."""
    return conn.client.host if conn.client else "unknown"


def wants_html(request: Request) -> bool:
    """htmx asked, or a browser navigated; API clients get JSON."""
    if request.headers.get("hx-request") == "true":
        return True
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


# PostgreSQL's bigint and integer: a larger id can name nothing, a larger count is a mistake.
MAX_ID = 2**63 - 1
MAX_COUNT = 2**31 - 1
DIGITS = re.compile(r"[0-9]{1,19}")
TRUTHY = frozenset({"1", "true", "on", "yes"})


class IdConvertor(Convertor[int]):
    """``{name:id}`` in a route: a positive bigint. Longer numbers don't match (a 404), where
    Starlette's ``int`` would hand PostgreSQL a value it refuses."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


def checked_text(value: str, name: str, max_length: int) -> str:
    """``value`` if PostgreSQL can store it and it fits; :class:`Invalid` naming ``name``."""
    if len(value) > max_length:
        raise Invalid(f"{name} can be at most {max_length:,} characters.", name)
    if "\x00" in value:
        raise Invalid(f"{name} contains a NUL character.", name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON's \ud800 escapes can make
        raise Invalid(f"{name} is not valid Unicode text.", name) from None
    return value


def whole_number(value: object, name: str, maximum: int = MAX_ID) -> int:
    """A non-negative integer from JSON or text (ASCII digits only: ``int("²")`` fails)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise Invalid(f"{name} must be a whole number.", name)
    if not 0 <= number <= maximum:
        raise Invalid(f"{name} must be between 0 and {maximum:,}.", name)
    return number


class Fields:
    """A request's input (form, JSON object or query string), read one typed field at a time.

    Every route reads through this, so no handler or action sees a value it did not ask
    for by type: text that PostgreSQL can store and that fits, numbers that fit its columns.
    """

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = values

    @classmethod
    async def of_body(cls, request: Request) -> Fields:
        """The fields of a JSON object or a form body."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            return cls(_json_object(await request.body()))
        form = await request.form()
        return cls({key: value for key, value in form.multi_items() if isinstance(value, str)})

    @classmethod
    def of_query(cls, request: Request) -> Fields:
        return cls(request.query_params)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def text(self, name: str, *, max_length: int = MAX_BODY_BYTES, default: str = "") -> str:
        """The field as text, ``default`` when absent."""
        value = self._values.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise Invalid(f"{name} must be text.", name)
        return checked_text(value, name, max_length)

    def optional_text(self, name: str, *, max_length: int = MAX_BODY_BYTES) -> str | None:
        """The field as text, None when absent or empty."""
        return self.text(name, max_length=max_length) or None

    def number(self, name: str, *, maximum: int = MAX_ID) -> int | None:
        """The field as a whole number, None when absent or empty."""
        value = self._values.get(name)
        if value is None or value == "":
            return None
        return whole_number(value, name, maximum)

    def choice(self, name: str, options: Collection[C], *, default: str = "") -> C:
        """One of ``options``, typed as they are (a Literal), or a 4xx that lists them."""
        asked = self.text(name, default=default)
        for option in options:
            if option == asked:
                return option
        raise Invalid(f"{name} must be one of {', '.join(options)}.", name)

    def flag(self, name: str) -> bool:
        """Checked boxes and switches: ``1``, ``true``, ``on`` or ``yes``, or JSON true."""
        value = self._values.get(name)
        if isinstance(value, bool):
            return value
        return isinstance(value, str) and value.strip().lower() in TRUTHY


def _json_object(body: bytes) -> dict[str, object]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise Invalid("The body is not valid JSON.") from None
    except RecursionError:
        raise Invalid("The body is nested too deeply; send a flat JSON object.") from None
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object.")
    return data


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


class Edge:
    """The outermost layer of every response: it adds the security headers, and answers
    503 with ``Retry-After`` to a request that failed because PostgreSQL is down.

    One pure-ASGI layer for both, since every frame of every stream crosses each layer's
    ``send``. It wraps everything that reads the database, middleware included (the
    widget's CORS reads sites), which Starlette's exception handlers do not cover. A
    request that fails for any other reason, a bad query included, still surfaces as the
    bug it is. A stream that loses the database after it started ends itself (see
    ``StreamResponse``).
    """

    def __init__(self, app: ASGIApp, *, security: SecurityHeaders) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message,
                           "headers": self.security.added_to(message.get("headers", ()))}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except db.OUTAGE_ERRORS as exc:
            pool = services(Request(scope)).pool
            if started or not await db.is_outage(exc, pool):
                raise
            db.report_unavailable(pool, exc)
            response = error_response(Request(scope), 503, UNAVAILABLE,
                                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            await response(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuse request bodies over a limit with 413, before a handler buffers them, and
    bodies that take too long to arrive with 408 (a slow sender holds a request open).

    Pure ASGI (not BaseHTTPMiddleware), so streaming responses pass through untouched.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES,
                 timeout: float = BODY_TIMEOUT_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
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
        complete = False
        deadline = asyncio.get_running_loop().time() + self.timeout

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in; what follows is the wait for a disconnect
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, "The request body took too long to arrive.") from None
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.message)
            complete = not message.get("more_body", False)
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
