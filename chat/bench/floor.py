"""The floor: the same request shapes as the product, with nothing stored.

A minimal Starlette app with sse-starlette's ``EventSourceResponse`` and an in-process
fan-out: start a conversation, post a message, a visitor stream from ``?after=``, an agent
inbox stream and a sign-in. The load client runs against it in the same invocation, so
every product figure comes with the best this machine, this Python and this client can do.
Run it with ``uvicorn --factory chat.bench.floor:app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

QUEUE_SIZE = 256


class Fanout:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.seqs: dict[int, int] = {}
        self.visitors: dict[int, set[asyncio.Queue[ServerSentEvent]]] = {}
        self.agents: set[asyncio.Queue[ServerSentEvent]] = set()

    def publish(self, conversation_id: int, client_id: str, body: str) -> int:
        seq = self.seqs[conversation_id] = self.seqs.get(conversation_id, 0) + 1
        entry = ServerSentEvent(
            f'<div id="entry-{conversation_id}-{seq}" data-client-id="{client_id}">'
            f"{body}</div>", id=f"{conversation_id}-{seq}", sep="\n")
        row = ServerSentEvent(f'<li id="conversation-{conversation_id}">'
                              f'<span class="preview">{body}</span></li>', sep="\n")
        for queue, event in [*((q, entry) for q in self.visitors.get(conversation_id, ())),
                             *((q, row) for q in self.agents)]:
            with contextlib.suppress(asyncio.QueueFull):  # a consumer that fell behind
                queue.put_nowait(event)
        return seq


fanout = Fanout()


async def start(request: Request) -> Response:
    conversation_id = next(fanout.ids)
    fanout.seqs[conversation_id] = 1
    return JSONResponse({"conversation": {"id": conversation_id},
                         "visitor_token": "floor", "message": {"seq": 1}}, status_code=201)


async def message(request: Request) -> Response:
    data = json.loads(await request.body())
    conversation_id = int(request.path_params["conversation_id"])
    seq = fanout.publish(conversation_id, data["client_id"], data["body"])
    return JSONResponse({"message": {"seq": seq}}, status_code=201)


async def login(request: Request) -> Response:
    response = JSONResponse({"csrf_token": "floor"})
    response.set_cookie("session", "floor")
    return response


async def events(queues: set[asyncio.Queue[ServerSentEvent]]) -> AsyncIterator[ServerSentEvent]:
    queue: asyncio.Queue[ServerSentEvent] = asyncio.Queue(QUEUE_SIZE)
    queues.add(queue)
    try:
        yield ServerSentEvent("", event="hello", sep="\n")
        while True:
            yield await queue.get()
    finally:
        queues.discard(queue)


async def visitor_stream(request: Request) -> Response:
    conversation_id = int(request.path_params["conversation_id"])
    return EventSourceResponse(events(fanout.visitors.setdefault(conversation_id, set())),
                               ping=15, sep="\n")


async def agent_stream(request: Request) -> Response:
    return EventSourceResponse(events(fanout.agents), ping=15, sep="\n")


async def health(request: Request) -> Response:
    return Response("ok")


def app() -> Starlette:
    prefix = "/widget/{site_key}/conversations"
    return Starlette(routes=[
        Route("/healthz", health),
        Route("/login", login, methods=["POST"]),
        Route("/stream", agent_stream),
        Route(prefix, start, methods=["POST"]),
        Route(prefix + "/{conversation_id:int}/messages", message, methods=["POST"]),
        Route(prefix + "/{conversation_id:int}/stream", visitor_stream),
    ])
