"""Just enough HTTP/1.1 over asyncio streams to load a server cheaply.

On a small machine the client shares the CPU with the server it measures, so it speaks
keep-alive requests and chunked SSE bodies itself instead of going through a full client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class Http:
    """One keep-alive HTTP/1.1 connection, one request at a time, with a cookie jar of one."""

    def __init__(self, host: str, port: int, cookie: str | None = None) -> None:
        self.host, self.port = host, port
        self.cookie = cookie
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        reused = self.writer is not None and not self.writer.is_closing()
        try:
            return await self._exchange(method, path, body, headers)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused:
                raise
        # The server closed the idle keep-alive connection as the request left: send it
        # again on a new one, as browsers do (a message's client_id makes that safe).
        self.close()
        return await self._exchange(method, path, body, headers)

    async def _exchange(self, method: str, path: str, body: bytes,
                        headers: dict[str, str] | None) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}",
                 f"Content-Length: {len(body)}", "Accept: application/json"]
        if self.cookie:
            lines.append(f"Cookie: {self.cookie}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, response_headers = await read_head(self.reader)
        if "set-cookie" in response_headers:
            self.cookie = response_headers["set-cookie"].split(";", 1)[0]
        length = int(response_headers.get("content-length", "0"))
        return status, await self.reader.readexactly(length)

    async def post_json(self, path: str, data: dict[str, Any],
                        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return await self.request("POST", path, json.dumps(data).encode(),
                                  {"Content-Type": "application/json", **(headers or {})})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def sse_events(host: str, port: int, path: str,
                     headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The raw events of one SSE response (chunked transfer decoded); closing the
    generator closes the socket."""
    reader, writer = await asyncio.open_connection(host, port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    try:
        status, _ = await read_head(reader)
        if status != 200:
            raise RuntimeError(f"stream {path} answered {status}")
        buffer = b""
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                yield event
    finally:
        writer.close()
