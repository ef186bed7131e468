"""The HTTP face of a stream: cursors from the request, and the SSE response that ends a
stream whose client falls behind, stops reading or loses the database."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import cast

from starlette.requests import Request

from chat import db, metrics
from chat.errors import Invalid
from chat.events import Cursor
from chat.services import services
from chat.stream import Stream, StreamLimits, View
from chat.web.http import Fields, client_address
from chat.web.sse import Ending, SSEResponse, Watchdog

logger = logging.getLogger(__name__)

# Below common proxy idle timeouts (60 s for nginx and most load balancers).
HEARTBEAT_SECONDS = 15
# A client that has not taken a frame for this long is gone or stuck: end its stream.
SEND_TIMEOUT_SECONDS = 30


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


class StreamResponse(SSEResponse):
    """The SSE response of a :class:`Stream`, which ends as soon as its client falls
    behind or stops reading.

    A client that stops reading blocks the response in a write. If its subscription
    overflows meanwhile, the response ends at once; if not, the watchdog ends it once the
    write has taken ``send_timeout`` seconds. Either way the stream is counted as dropped,
    and the client, once it reads again, reconnects and resumes from its cursor: nothing
    is lost. A stream that finds PostgreSQL unavailable ends too, so its client reconnects.
    """

    def __init__(self, stream: Stream, watchdog: Watchdog, *,
                 send_timeout: float = SEND_TIMEOUT_SECONDS,
                 on_close: Callable[[], None] = lambda: None) -> None:
        self.stream = stream
        self.on_close = on_close
        super().__init__(cast(AsyncGenerator[bytes, None], stream.frames()), watchdog,
                         send_timeout=send_timeout)
        stream.on_fell_behind = self._fell_behind

    def _fell_behind(self) -> None:
        # Blocked in a write, the stream cannot see its subscription overflow: end it now.
        # Otherwise it sees the overflow at its next wait and ends by itself.
        self.end_if_writing(Ending.BEHIND)

    def finished(self, ending: Ending | None) -> None:
        self.stream.on_fell_behind = None  # the stream and its response refer to each other
        self.on_close()
        if ending is Ending.STALLED or self.stream.fell_behind:
            audience = self.stream.view.audience
            metrics.STREAMS_DROPPED.labels(audience).inc()
            logger.info("Disconnected a %s stream whose client %s", audience,
                        f"took nothing for {self.send_timeout:g} s"
                        if ending is Ending.STALLED else "fell behind")

    async def ends_cleanly(self, error: Exception) -> bool:
        # PostgreSQL became unavailable: end as if finished, so the client reconnects (and
        # gets a 503 with Retry-After until it is back).
        if not isinstance(error, db.OUTAGE_ERRORS) or not await db.is_outage(
                error, self.stream.svc.pool):
            return False
        db.report_unavailable(self.stream.svc.pool, error)
        return True


def sse_response(request: Request, view: View, cursors: Mapping[int, Cursor | None],
                 client: str, ends_at: float | None = None,
                 opened: Callable[[], Callable[[], None]] | None = None) -> StreamResponse:
    """The stream of ``view``, from ``cursors`` (see :func:`requested_cursors`), for
    ``client`` (a visitor's or a session's) until ``ends_at`` (a session's expiry, as a
    Unix time); 429 when that client, or its address, holds too many streams open already.
    ``opened`` is called once the stream is let in, and what it returns when it ends."""
    svc = services(request)
    release = svc.streams.take(client, client_address(request))
    on_close = opened() if opened is not None else None

    def closed() -> None:
        release()
        if on_close is not None:
            on_close()
    limits = StreamLimits(replay_limit=svc.settings.replay_limit, heartbeat=HEARTBEAT_SECONDS)
    return StreamResponse(Stream(svc, view, cursors, limits, ends_at=ends_at), svc.watchdog,
                          send_timeout=svc.settings.stream_send_timeout, on_close=closed)
