"""The lean SSE response on its own: what it writes, and how each way of ending ends it.

The ASGI server is played by two callables: ``send`` records messages (and can block like
a client that stopped reading), ``receive`` says when the client disconnects. The network
side of the same behaviour is tested against a real uvicorn in tests/integration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest
from starlette.types import Message

from chat.web.sse import HEARTBEAT, MAX_WRITE_BYTES, Ending, SSEResponse, Watchdog

SCOPE = {"type": "http", "method": "GET", "path": "/stream", "headers": []}


class Client:
    """The server side of one connection: what was sent, and a disconnect on demand."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.gone = asyncio.Event()
        self.stalled = asyncio.Event()  # set: every write blocks, as on a full socket
        self.blocked = asyncio.Event()  # a write is blocked now

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.stalled.is_set():
            self.blocked.set()
            await asyncio.Event().wait()  # cancelled by the response, or never returns
        self.sent.append(message)

    @property
    def body(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]

    @property
    def finished(self) -> bool:
        return bool(self.sent) and self.sent[-1] == {"type": "http.response.body",
                                                     "body": b"", "more_body": False}


class Recorded(SSEResponse):
    endings: list[Ending | None]

    def finished(self, ending: Ending | None) -> None:
        self.endings.append(ending)


class Frames:
    """A frame generator the test feeds, which notes when it was closed."""

    def __init__(self, *frames: bytes) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for frame in frames:
            self.queue.put_nowait(frame)
        self.closed = False

    async def generate(self) -> AsyncGenerator[bytes, None]:
        try:
            while (frame := await self.queue.get()) is not None:
                yield frame
        finally:
            self.closed = True


def response(frames: Frames, watchdog: Watchdog | None = None,
             send_timeout: float = 30) -> Recorded:
    made = Recorded(frames.generate(), watchdog or Watchdog(), send_timeout=send_timeout)
    made.endings = []
    return made


async def until(condition: object, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0)


async def test_frames_are_written_one_each_with_a_heartbeat_for_an_empty_one_then_finished(
) -> None:
    big = b"x" * (2 * MAX_WRITE_BYTES + 10)
    frames, client = Frames(b"data: a\n\n", b"", big, None), Client()  # type: ignore[arg-type]
    sse = response(frames)
    await sse(SCOPE, client.receive, client.send)
    start = client.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert dict(start["headers"]) == {b"content-type": b"text/event-stream; charset=utf-8",
                                      b"cache-control": b"no-cache, no-store",
                                      b"x-accel-buffering": b"no"}
    body = client.body
    assert body[:2] == [b"data: a\n\n", HEARTBEAT]
    assert [len(part) for part in body[2:-1]] == [MAX_WRITE_BYTES, MAX_WRITE_BYTES, 10]
    assert b"".join(body[2:-1]) == big
    assert client.finished and frames.closed and sse.endings == [None]


async def test_a_disconnect_ends_a_waiting_stream_and_closes_its_frames() -> None:
    frames, client = Frames(b"data: a\n\n"), Client()
    sse = response(frames)
    serving = asyncio.create_task(sse(SCOPE, client.receive, client.send))
    await until(lambda: client.body == [b"data: a\n\n"])
    client.gone.set()
    await asyncio.wait_for(serving, 2)  # ends, and not by raising
    assert frames.closed and sse.endings == [Ending.DISCONNECTED]
    assert not client.finished  # nobody there to finish for


async def test_the_watchdog_drops_a_stream_whose_write_is_overdue_and_only_that_one() -> None:
    watchdog = Watchdog()
    stuck, reading = Client(), Client()
    stuck_frames, reading_frames = Frames(), Frames()
    stuck_sse = response(stuck_frames, watchdog, send_timeout=30)
    reading_sse = response(reading_frames, watchdog, send_timeout=30)
    serving = [asyncio.create_task(stuck_sse(SCOPE, stuck.receive, stuck.send)),
               asyncio.create_task(reading_sse(SCOPE, reading.receive, reading.send))]
    await until(lambda: watchdog.streams == 2 and stuck.sent and reading.sent)
    stuck.stalled.set()
    stuck_frames.queue.put_nowait(b"data: never taken\n\n")
    await asyncio.wait_for(stuck.blocked.wait(), 2)
    assert watchdog.check(time.monotonic()) == 0  # within its send timeout
    assert watchdog.check(time.monotonic() + 31) == 1
    await asyncio.wait_for(serving[0], 2)
    assert stuck_sse.endings == [Ending.STALLED] and stuck_frames.closed
    assert not stuck.finished  # its connection is unusable: nothing more is written
    reading_frames.queue.put_nowait(b"data: b\n\n")
    await until(lambda: b"data: b\n\n" in reading.body)  # the other stream goes on
    reading_frames.queue.put_nowait(None)  # type: ignore[arg-type]
    await asyncio.wait_for(serving[1], 2)
    assert reading.finished and reading_sse.endings == [None] and watchdog.streams == 0


async def test_end_if_writing_ends_only_a_stream_blocked_in_a_write() -> None:
    frames, client = Frames(), Client()
    sse = response(frames)
    serving = asyncio.create_task(sse(SCOPE, client.receive, client.send))
    await until(lambda: client.sent)
    sse.end_if_writing(Ending.BEHIND)  # waiting for a frame: left alone
    await asyncio.sleep(0.01)
    assert not serving.done()
    client.stalled.set()
    frames.queue.put_nowait(b"data: a\n\n")
    await asyncio.wait_for(client.blocked.wait(), 2)
    sse.end_if_writing(Ending.BEHIND)
    await asyncio.wait_for(serving, 2)
    assert sse.endings == [Ending.BEHIND] and frames.closed and not client.finished


async def test_a_shutdown_finishes_waiting_streams_at_once_and_refuses_new_ones() -> None:
    watchdog = Watchdog()
    frames, client = Frames(b"data: a\n\n"), Client()
    sse = response(frames, watchdog)
    serving = asyncio.create_task(sse(SCOPE, client.receive, client.send))
    await until(lambda: client.body == [b"data: a\n\n"])
    watchdog.shut_down()
    await asyncio.wait_for(serving, 2)
    assert client.finished and frames.closed and sse.endings == [Ending.SHUTDOWN]
    late_frames, late = Frames(b"data: too late\n\n"), Client()
    late_sse = response(late_frames, watchdog)
    await asyncio.wait_for(late_sse(SCOPE, late.receive, late.send), 2)
    assert late.body == [b""] and late.finished and late_sse.endings == [Ending.SHUTDOWN]


async def test_a_shutdown_lets_a_write_in_progress_finish_within_the_grace() -> None:
    watchdog = Watchdog(grace=2)
    frames, client = Frames(), Client()
    sse = response(frames, watchdog)
    serving = asyncio.create_task(sse(SCOPE, client.receive, client.send))
    await until(lambda: client.sent)
    client.stalled.set()
    frames.queue.put_nowait(b"data: slow\n\n")
    await asyncio.wait_for(client.blocked.wait(), 2)
    watchdog.shut_down()
    assert watchdog.check(time.monotonic()) == 0  # the grace has not run out
    assert not serving.done()
    assert watchdog.check(time.monotonic() + 3) == 1  # it has: cut
    await asyncio.wait_for(serving, 2)
    assert sse.endings == [Ending.SHUTDOWN] and frames.closed


async def test_the_servers_own_cancellation_is_not_swallowed() -> None:
    frames, client = Frames(), Client()
    sse = response(frames)
    serving = asyncio.create_task(sse(SCOPE, client.receive, client.send))
    await until(lambda: client.sent)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert frames.closed and sse.endings == [None]


async def test_frames_that_fail_end_cleanly_only_where_the_response_says_so() -> None:
    class Expected(Recorded):
        async def ends_cleanly(self, error: Exception) -> bool:
            return isinstance(error, ConnectionError)

    async def failing(error: Exception) -> AsyncGenerator[bytes, None]:
        yield b"data: a\n\n"
        raise error

    expected = Expected(failing(ConnectionError("gone")), Watchdog(), send_timeout=30)
    expected.endings, client = [], Client()
    await expected(SCOPE, client.receive, client.send)
    assert client.finished and expected.endings == [None]
    unexpected = Expected(failing(ValueError("a bug")), Watchdog(), send_timeout=30)
    unexpected.endings = []
    with pytest.raises(ValueError):
        await unexpected(SCOPE, Client().receive, Client().send)


async def test_a_head_request_gets_the_headers_and_no_stream() -> None:
    frames, client = Frames(b"data: a\n\n"), Client()
    sse = response(frames)
    await asyncio.wait_for(sse({**SCOPE, "method": "HEAD"}, client.receive, client.send), 2)
    assert client.sent[0]["type"] == "http.response.start" and client.body == [b""]
    assert sse.endings == [None]
