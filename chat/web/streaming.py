"""The HTTP face of a stream: cursor from the request, SSE response with heartbeats."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import cast

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from chat import db, metrics
from chat.errors import Invalid
from chat.events import Cursor
from chat.services import services
from chat.stream import Stream, StreamLimits, View
from chat.web.http import Fields, client_address

logger = logging.getLogger(__name__)

# Below common proxy idle timeouts (60 s for nginx and most load balancers).
HEARTBEAT_SECONDS = 15
# A client that has not taken a frame for this long is gone or stuck: end its stream.
SEND_TIMEOUT_SECONDS = 30
# The most one write hands to the server. A replay can be megabytes; written at once, it
# would sit whole in the buffer of a client that stopped reading, and stay there after the
# stream ends, because the server closes a connection only once its buffer is sent.
MAX_WRITE_BYTES = 16 * 1024
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
    after = Fields.of_query(request).number("after")
    return None if after is None else Cursor(conversation_id, after)


def heartbeat() -> ServerSentEvent:
    # A named event rather than a comment, so a page can notice a silent, half-open stream.
    return ServerSentEvent(event="ping")


class StreamResponse(EventSourceResponse):
    """An SSE response that ends as soon as its client falls behind or stops reading.

    A client that stops reading blocks the response in ``send``. If its subscription
    overflows meanwhile, this cancels the response at once; if not, the send gives up
    after ``send_timeout`` seconds. Either way the stream is counted as dropped, and the
    client, once it reads again, reconnects and resumes from its cursor: nothing is lost.
    A stream that finds PostgreSQL unavailable ends too, so its client reconnects.
    """

    def __init__(self, stream: Stream, *, send_timeout: float = SEND_TIMEOUT_SECONDS,
                 on_close: Callable[[], None] = lambda: None) -> None:
        self.shutting_down = anyio.Event()
        self.stream = stream
        self.on_close = on_close
        super().__init__(
            self._frames(), ping=HEARTBEAT_SECONDS, ping_message_factory=heartbeat,
            send_timeout=send_timeout, headers={"Cache-Control": "no-cache, no-store"},
            shutdown_event=self.shutting_down, shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        audience = self.stream.view.audience
        stalled = False
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._cancel_when_behind, group.cancel_scope)
                group.start_soon(self._stop_on_shutdown)
                await super().__call__(scope, receive, send)
                group.cancel_scope.cancel()
        except* SendTimeoutError:
            # Raised in a task of this group, so it arrives inside an ExceptionGroup.
            stalled = True
        finally:
            self.on_close()
        if stalled or self.stream.fell_behind.is_set():
            metrics.STREAMS_DROPPED.labels(audience).inc()
            logger.info("Disconnected a %s stream whose client %s", audience,
                        f"took nothing for {self.send_timeout:g} s" if stalled
                        else "fell behind")

    async def _frames(self) -> AsyncIterator[bytes]:
        """The stream's frames, in writes of at most ``MAX_WRITE_BYTES``; the stream ends
        cleanly, as if finished, when PostgreSQL becomes unavailable."""
        # Closed here, not when collected, so its subscription and gauge end with the response.
        frames = cast(AsyncGenerator[bytes, None], self.stream.frames())
        try:
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    if len(frame) <= MAX_WRITE_BYTES:  # nearly all: no copy
                        yield frame
                        continue
                    for start in range(0, len(frame), MAX_WRITE_BYTES):
                        yield frame[start:start + MAX_WRITE_BYTES]
        except db.OUTAGE_ERRORS as exc:
            if not await db.is_outage(exc, self.stream.svc.pool):
                raise
            db.report_unavailable(self.stream.svc.pool, exc)

    async def _stop_on_shutdown(self) -> None:
        # End the response properly, so the client sees a finished stream and reconnects
        # (to another process) at once.
        await self.shutting_down.wait()
        self.stream.stop()

    async def _cancel_when_behind(self, scope: anyio.CancelScope) -> None:
        await self.stream.fell_behind.wait()
        scope.cancel()


def sse_response(request: Request, view: View, cursors: Mapping[int, Cursor | None],
                 client: str, ends_at: float | None = None) -> StreamResponse:
    """The stream of ``view``, from ``cursors`` (see :func:`requested_cursors`), for
    ``client`` (a visitor's or a session's) until ``ends_at`` (a session's expiry, as a
    Unix time); 429 when that client, or its address, holds too many streams open already."""
    svc = services(request)
    release = svc.streams.take(client, client_address(request))
    limits = StreamLimits(replay_limit=svc.settings.replay_limit)
    return StreamResponse(Stream(svc, view, cursors, limits, ends_at=ends_at),
                          send_timeout=svc.settings.stream_send_timeout, on_close=release)
