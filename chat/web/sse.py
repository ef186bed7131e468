"""A lean server-sent-events response, and the one watchdog per process that keeps its
streams from hanging.

Every open stream is a long-lived set of objects that memory and garbage collection pay
for, so a stream should cost as few as it can. :class:`SSEResponse` writes from the
request's own task, with no task, timer or cancel scope per concern (sse-starlette's
response took seven tasks and nine cancel scopes):

- the **heartbeat** is written by the same loop, when the frame iterator yields an empty
  frame (the stream's own wait for news times out, see ``StreamLimits.heartbeat``);
- a **disconnect** shows only in ``receive()`` (uvicorn's ``send()`` returns silently once
  the client is gone), so one small task per stream awaits it and cancels the stream;
- a client that **stops reading** leaves a write blocked on flow control. No write carries
  a timer: it records when it must be done by, and the :class:`Watchdog` cancels, once a
  second, the streams whose write is overdue;
- on **shutdown** the watchdog ends every stream, so that its client sees a finished
  response and reconnects (to another process) at once.

A stream ended for any of these reasons is cancelled inside its own task; the response
catches that cancellation, so the request ends as if it had finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import time
from collections.abc import AsyncGenerator, Callable
from types import FrameType
from typing import Final

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

# A named event rather than a comment, so a page can notice a silent, half-open stream.
HEARTBEAT: Final = b"event: ping\n\n"
# The most one write hands to the server. A replay can be megabytes; written at once, it
# would sit whole in the buffer of a client that stopped reading, and stay there after the
# stream ends, because the server closes a connection only once its buffer is sent.
MAX_WRITE_BYTES: Final = 16 * 1024
# How long a stream may take to finish a write after the server was asked to stop.
SHUTDOWN_GRACE_SECONDS: Final = 2.0
# How often the watchdog looks for overdue writes: a stalled client is dropped between
# its send timeout and one interval later.
WATCHDOG_INTERVAL: Final = 1.0

_HEADERS: Final = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # Neither the browser nor a proxy may keep or replay a live stream.
    (b"cache-control", b"no-cache, no-store"),
    # nginx buffers proxied responses unless told not to; a buffered stream is not live.
    (b"x-accel-buffering", b"no"),
)
_END: Final[Message] = {"type": "http.response.body", "body": b"", "more_body": False}

_Handler = Callable[[int, FrameType | None], object]


class Ending(enum.Enum):
    """Why a stream was ended before its frames ran out."""

    DISCONNECTED = "disconnected"  # the client went away
    STALLED = "stalled"  # a write took longer than the send timeout
    BEHIND = "behind"  # the client fell behind while a write was blocked
    SHUTDOWN = "shutdown"  # the server is stopping


class Watchdog:
    """This process's open SSE responses. Once a second it cancels those whose current
    write is overdue; on shutdown it ends them all (see :meth:`shut_down`)."""

    def __init__(self, interval: float = WATCHDOG_INTERVAL,
                 grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        self.interval = interval
        self.grace = grace
        self.stopping = False
        self._stop_by: float | None = None  # when writes must end during a shutdown
        self._open: set[SSEResponse] = set()
        # Those in the middle of a write: the only ones a check need look at (walking
        # every open stream once a second was most of what idle streams cost it).
        self._writing: set[SSEResponse] = set()

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return len(self._open)

    def opened(self, response: SSEResponse) -> None:
        self._open.add(response)

    def closed(self, response: SSEResponse) -> None:
        self._open.discard(response)
        self._writing.discard(response)

    def writing(self, response: SSEResponse) -> None:
        """``response`` began a write (its ``write_deadline`` is set)."""
        self._writing.add(response)

    def written(self, response: SSEResponse) -> None:
        self._writing.discard(response)

    async def run(self) -> None:
        """Check for overdue writes until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.check(time.monotonic())

    def check(self, now: float) -> int:
        """Cancel the streams whose write should have been done by ``now``; return how many."""
        if self._stop_by is not None and self._stop_by <= now:
            overdue = [r for r in self._writing if r.write_deadline is not None]
        else:
            overdue = [r for r in self._writing
                       if r.write_deadline is not None and r.write_deadline <= now]
        for response in overdue:
            response.end(Ending.STALLED)
        return len(overdue)

    def shut_down(self) -> None:
        """End every open stream now, and every stream that opens from now on at once.

        A stream in the middle of a write gets ``grace`` seconds to finish it first, so
        that its client does not get half a frame."""
        if self.stopping:
            return
        self.stopping = True
        self._stop_by = time.monotonic() + self.grace
        logger.info("Shutting down: ending %d open stream(s)", len(self._open))
        for response in list(self._open):
            response.shut_down()

    def shut_down_on_exit_signals(self) -> Callable[[], None]:
        """Call :meth:`shut_down` as soon as the process is asked to stop (SIGTERM or
        SIGINT), before the server waits for open requests to finish; return the undo.

        The server's own handler still runs: this one is chained in front of it. The ASGI
        server tells an app nothing until every request has ended, and a stream never
        ends by itself, so the signal is the first and only notice. Where no Python-level
        handler is installed (not the main thread, or a server that handles signals
        another way) nothing is chained, and streams end when the server cancels them.
        """
        loop = asyncio.get_running_loop()
        restore: list[tuple[signal.Signals, _Handler]] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def handler(sig: int, frame: FrameType | None, previous: _Handler = previous) -> None:
                # Runs between two bytecodes of whatever the loop is doing: only schedule.
                loop.call_soon_threadsafe(self.shut_down)
                previous(sig, frame)

            try:
                signal.signal(signum, handler)
            except ValueError:  # not the main thread
                break
            restore.append((signum, previous))

        def undo() -> None:
            for signum, previous in restore:
                with contextlib.suppress(ValueError):
                    signal.signal(signum, previous)

        return undo


class SSEResponse(Response):
    """Streams the SSE frames that ``frames`` yields (already encoded), each in one write,
    with a heartbeat for every empty frame.

    The stream ends when ``frames`` runs out (the response then finishes properly), or
    when :meth:`end` is called: the client disconnected, a write took longer than
    ``send_timeout`` seconds (the :class:`Watchdog` says so), the caller decided (see
    :meth:`end_if_writing`), or the server is shutting down. Subclasses learn how it
    ended in :meth:`finished`.
    """

    def __init__(self, frames: AsyncGenerator[bytes, None], watchdog: Watchdog, *,
                 send_timeout: float) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_HEADERS)
        self.frames = frames
        self.watchdog = watchdog
        self.send_timeout = send_timeout
        # When the write in progress must be done by (monotonic clock); None between writes.
        self.write_deadline: float | None = None
        self.ending: Ending | None = None
        self._task: asyncio.Task[object] | None = None  # set while the stream runs
        self._cancelled = False  # end() cancelled the task: a CancelledError is ours
        self._interrupted = False  # a write never returned: the connection is unusable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":  # headers only: a HEAD must not open a stream
            try:
                await send({"type": "http.response.start", "status": 200,
                            "headers": self.raw_headers})
                await send(_END)
            finally:
                self.finished(None)
            return
        # Each frame held alive while the stream waits is walked by every full garbage
        # collection, so this and _stream are the only two.
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self.watchdog.opened(self)
        disconnect = asyncio.ensure_future(self._await_disconnect(receive))
        try:
            try:
                await self._stream(send)
            except asyncio.CancelledError:
                if not self._ours(task):
                    raise
                if not self._interrupted and self.ending is not Ending.DISCONNECTED:
                    # Cancelled between writes, the connection is fine: finish the body,
                    # so the client sees a finished stream and reconnects at once.
                    try:
                        await self._write(send, _END)
                    except asyncio.CancelledError:
                        if not self._ours(task):
                            raise
        finally:
            # No await from here on, so that no end() can cancel code beyond this response.
            self._task = None
            self.watchdog.closed(self)
            disconnect.cancel()
            self.finished(self.ending)

    def finished(self, ending: Ending | None) -> None:
        """Called once the response is over; ``ending`` is None when its frames ran out."""

    async def ends_cleanly(self, error: Exception) -> bool:
        """Whether ``error``, raised by the frames, ends the stream as if they ran out
        (True) or goes on up as the bug it is (False, the default)."""
        return False

    def end(self, ending: Ending) -> None:
        """Cancel the stream now; it then finishes as cleanly as the connection allows."""
        if self._task is None or self._cancelled:
            return
        if self.ending is None:
            self.ending = ending
        self._cancelled = True
        self._task.cancel()

    def end_if_writing(self, ending: Ending) -> None:
        """Cancel the stream if it is blocked in a write (otherwise its frames are
        expected to end by themselves)."""
        if self.write_deadline is not None:
            self.end(ending)

    def shut_down(self) -> None:
        """End the stream for the server's shutdown: at once, or, in the middle of a
        write, once that write is done (the watchdog cancels it if it takes too long)."""
        if self.write_deadline is None:
            self.end(Ending.SHUTDOWN)
        elif self.ending is None:
            self.ending = Ending.SHUTDOWN

    def _ours(self, task: asyncio.Task[object]) -> bool:
        """Whether the cancellation just caught is end()'s, and so ends here. The server's
        own (it gave up waiting for open requests) goes on up: uncancel() says how many
        requests are still pending."""
        if not self._cancelled or task.uncancel() > 0:
            return False
        self._cancelled = False  # the final write may need cancelling too
        return True

    async def _stream(self, send: Send) -> None:
        await self._write(send, {"type": "http.response.start", "status": 200,
                                 "headers": self.raw_headers})
        # Closed here, not when collected, so what the frames hold (a subscription, a
        # database connection) is released with the response.
        async with contextlib.aclosing(self.frames) as frames:
            if self.watchdog.stopping:
                self.ending = Ending.SHUTDOWN  # opened during a shutdown: end at once
            else:
                try:
                    async for frame in frames:
                        await self._write_frame(send, frame or HEARTBEAT)
                        if self.ending is not None:
                            break  # shutting down: the write it waited for is done
                except Exception as exc:
                    if not await self.ends_cleanly(exc):
                        raise
        await self._write(send, _END)

    async def _write_frame(self, send: Send, frame: bytes) -> None:
        if len(frame) <= MAX_WRITE_BYTES:  # nearly all: no copy
            await self._write(send, {"type": "http.response.body", "body": frame,
                                     "more_body": True})
            return
        for start in range(0, len(frame), MAX_WRITE_BYTES):
            await self._write(send, {"type": "http.response.body", "more_body": True,
                                     "body": frame[start:start + MAX_WRITE_BYTES]})

    async def _write(self, send: Send, message: Message) -> None:
        # A deadline, not a timer: the watchdog compares it with the clock once a second.
        self.write_deadline = time.monotonic() + self.send_timeout
        self._interrupted = True
        self.watchdog.writing(self)
        await send(message)
        self.watchdog.written(self)
        self._interrupted = False
        self.write_deadline = None

    async def _await_disconnect(self, receive: Receive) -> None:
        try:
            # The request's body (none for a GET) comes first; only a disconnect matters.
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception as exc:  # the body broke a limit: the request is over either way
            logger.info("Ending a stream whose request failed: %s", exc)
        self.end(Ending.DISCONNECTED)
