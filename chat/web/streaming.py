"""The HTTP face of a stream: cursor from the request, SSE response with heartbeats."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from chat import metrics
from chat.errors import Invalid
from chat.events import Cursor
from chat.services import services
from chat.stream import Stream, StreamLimits, View
from chat.web.http import int_param

logger = logging.getLogger(__name__)

# Below common proxy idle timeouts (60 s for nginx and most load balancers).
HEARTBEAT_SECONDS = 15
# A client that has not taken a frame for this long is gone or stuck: end its stream.
SEND_TIMEOUT_SECONDS = 30
# How long a stream may take to finish after the server was asked to stop.
SHUTDOWN_GRACE_SECONDS = 2


# A shared stream carries every tab's conversation; bounded so one request stays cheap.
MAX_WATCHED = 50


def requested_cursors(request: Request,
                      conversation_id: int | None = None) -> dict[int, Cursor | None]:
    """The conversations a stream is asked to carry, each with where the client is in it
    (None: live from now).

    ``?watch=C-S,C-S`` lists conversations with the sequence the client has of each (a tab
    holding the stream for a whole browser sends every tab's). ``conversation_id`` (from the
    path or ``?conversation=``) adds one more, positioned as :func:`requested_cursor` says.
    """
    cursors: dict[int, Cursor | None] = {}
    for cursor in watch_param(request.query_params.get("watch", "")):
        known = cursors.get(cursor.conversation_id)
        if known is None or cursor.seq < known.seq:  # listed twice: the earlier replays both
            cursors[cursor.conversation_id] = cursor
    if conversation_id is not None:
        cursors[conversation_id] = requested_cursor(request, conversation_id)
    return cursors


def watch_param(value: str) -> list[Cursor]:
    items = value.split(",") if value else []
    if len(items) > MAX_WATCHED:
        raise Invalid(f"watch may list at most {MAX_WATCHED} conversations; open a stream "
                      "per group of them.", "watch")
    cursors = []
    for item in items:
        cursor = Cursor.parse(item)
        if cursor is None:
            raise Invalid("watch must be a comma-separated list of CONVERSATION-SEQ, "
                          "such as 12-40,15-3.", "watch")
        cursors.append(cursor)
    return cursors


def requested_cursor(request: Request, conversation_id: int) -> Cursor | None:
    """``Last-Event-ID`` (sent by the browser on reconnect), else ``?after=SEQ``.

    A malformed ``Last-Event-ID`` counts as a cursor for no conversation, so the stream
    answers it with a reload instead of silently starting from now.
    """
    header = request.headers.get("last-event-id")
    if header:
        return Cursor.parse(header) or Cursor(0, 0)
    after = int_param(request.query_params.get("after"), "after")
    return None if after is None else Cursor(conversation_id, after)


def heartbeat() -> ServerSentEvent:
    # A named event rather than a comment, so a page can notice a silent, half-open stream.
    return ServerSentEvent(event="ping")


class StreamResponse(EventSourceResponse):
    """An SSE response that ends as soon as its client falls behind.

    A client that stops reading blocks the response in ``send``; its subscription then
    overflows, and this cancels the response instead of waiting for the send timeout. The
    client reconnects and resumes from its cursor, so nothing is lost.
    """

    def __init__(self, stream: Stream) -> None:
        self.shutting_down = anyio.Event()
        super().__init__(
            stream.frames(), ping=HEARTBEAT_SECONDS, ping_message_factory=heartbeat,
            send_timeout=SEND_TIMEOUT_SECONDS, headers={"Cache-Control": "no-cache, no-store"},
            shutdown_event=self.shutting_down, shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
        )
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        audience = self.stream.view.audience
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._cancel_when_behind, group.cancel_scope)
                group.start_soon(self._stop_on_shutdown)
                await super().__call__(scope, receive, send)
                group.cancel_scope.cancel()
        except SendTimeoutError:
            self.stream.fell_behind.set()
        if self.stream.fell_behind.is_set():
            metrics.STREAMS_DROPPED.labels(audience).inc()
            logger.info("Disconnected a %s stream whose client fell behind", audience)

    async def _stop_on_shutdown(self) -> None:
        # End the response properly, so the client sees a finished stream and reconnects
        # (to another process) at once.
        await self.shutting_down.wait()
        self.stream.stop()

    async def _cancel_when_behind(self, scope: anyio.CancelScope) -> None:
        await self.stream.fell_behind.wait()
        scope.cancel()


def sse_response(request: Request, view: View,
                 cursors: Mapping[int, Cursor | None]) -> StreamResponse:
    """The stream of ``view``, from ``cursors`` (see :func:`requested_cursors`)."""
    svc = services(request)
    limits = StreamLimits(replay_limit=svc.settings.replay_limit)
    return StreamResponse(Stream(svc, view, cursors, limits))
