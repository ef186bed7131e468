"""The HTTP/1.1 protocol ``chat serve`` runs uvicorn with: uvicorn's httptools protocol,
plus limits on the request head that uvicorn leaves open.

Without them a client may send a head of any size (16 MB was accepted) or take forever
to send it, holding a connection and its memory for free; many such clients exhaust the
server. Request bodies have their own size and time limits (:class:`chat.web.http.BodySizeLimit`).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 32 * 1024  # request line and headers; browsers send a few KiB
HEAD_TIMEOUT_SECONDS = 10.0  # from connecting (or the previous response) to a whole head


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parser error (a 400)."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            self._await_head()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_received()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()  # the next request on this connection gets the same time

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            logger.warning("Refused a request head over %d KiB from %s",
                           MAX_HEAD_BYTES // 1024, self.client[0] if self.client else "?")
            raise HeadTooLarge

    def _await_head(self) -> None:
        self._head_received()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def _head_received(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
