"""Request bodies are bounded in size and in the time they take to arrive."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Scope

from chat.web.http import EXCEPTION_HANDLERS, BodySizeLimit


async def echo_length(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


def app(timeout: float) -> BodySizeLimit:
    inner = Starlette(routes=[Route("/", echo_length, methods=["POST"])],
                      exception_handlers=EXCEPTION_HANDLERS)
    return BodySizeLimit(inner, limit=1024, timeout=timeout)


async def call(asgi: BodySizeLimit, chunks: list[Message], then_wait: bool) -> Message:
    """POST the ``chunks``; with ``then_wait`` the client goes quiet before finishing."""
    pending = list(chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then_wait:
            await asyncio.Event().wait()  # a client that never sends the rest
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": [],
                    "query_string": b"", "root_path": ""}
    async with asyncio.timeout(5):
        await asgi(scope, receive, send)
    return sent[0]


async def test_a_body_that_stops_arriving_gets_408() -> None:
    start = await call(app(timeout=0.2), [{"type": "http.request", "body": b"ab",
                                           "more_body": True}], then_wait=True)
    assert start["status"] == 408


async def test_a_body_over_the_limit_gets_413_and_one_within_it_is_served() -> None:
    chunk = {"type": "http.request", "body": b"x" * 600, "more_body": True}
    over = await call(app(timeout=5), [chunk, chunk], then_wait=True)
    assert over["status"] == 413
    within = await call(app(timeout=5), [{"type": "http.request", "body": b"x" * 600,
                                          "more_body": False}], then_wait=False)
    assert within["status"] == 200
