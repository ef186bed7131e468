"""HTTP clients that act like the widget and the dashboard, and an SSE reader with timeouts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    event: str | None
    id: str | None
    data: str

    @property
    def seq(self) -> int | None:
        """The history sequence of an entry event (ids are ``conversation-seq``)."""
        return int(self.id.rpartition("-")[2]) if self.id else None


class EventReader:
    """Reads one SSE response; every read has a deadline so a test never hangs."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.last_id: str | None = None

    async def next(self, timeout: float = 10.0) -> Event:
        fields: dict[str, list[str]] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if fields:
                        break
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
            else:
                raise EOFError("the server ended the stream")
        event_id = fields.get("id", [None])[-1]
        if event_id:
            self.last_id = event_id
        return Event(fields.get("event", [None])[-1], event_id, "\n".join(fields.get("data", [])))

    async def until(self, done: Callable[[list[Event]], bool], timeout: float = 15.0,
                    skip_pings: bool = True) -> list[Event]:
        """Read events until ``done(events so far)`` holds."""
        events: list[Event] = []
        async with asyncio.timeout(timeout):
            while not done(events):
                event = await self.next(timeout)
                if not (skip_pings and event.event == "ping"):
                    events.append(event)
        return events

    async def entries(self, count: int, timeout: float = 15.0) -> list[Event]:
        """Read until ``count`` history entries arrived; return just those."""
        events = await self.until(lambda es: sum(e.id is not None for e in es) >= count, timeout)
        return [e for e in events if e.id is not None]


def new_client_id() -> str:
    return uuid.uuid4().hex


class Visitor:
    """What the widget does over HTTP, with the visitor token in a header."""

    def __init__(self, base_url: str, site_key: str, token: str | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=15)
        self.site_key = site_key
        self.token = token
        self.conversation_id: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Visitor-Token": self.token} if self.token else {}

    async def start(self, body: str = "Hello", **extra: Any) -> httpx.Response:
        response = await self.http.post(
            f"/widget/{self.site_key}/conversations", headers=self.headers,
            data={"body": body, "client_id": new_client_id(), **extra},
        )
        if response.status_code in (200, 201):
            data = response.json()
            self.token = data.get("visitor_token", self.token)
            self.conversation_id = data["conversation"]["id"]
        return response

    async def send(self, body: str, client_id: str | None = None,
                   conversation_id: int | None = None) -> httpx.Response:
        conversation = conversation_id or self.conversation_id
        return await self.http.post(
            f"/widget/{self.site_key}/conversations/{conversation}/messages",
            headers=self.headers, data={"body": body, "client_id": client_id or new_client_id()},
        )

    async def typing(self, typing: bool = True) -> httpx.Response:
        return await self.http.post(
            f"/widget/{self.site_key}/conversations/{self.conversation_id}/typing",
            headers=self.headers, data={"typing": "1" if typing else "0"},
        )

    @asynccontextmanager
    async def stream(self, after: int | None = None, last_event_id: str | None = None,
                     conversation_id: int | None = None) -> AsyncIterator[EventReader]:
        conversation = conversation_id or self.conversation_id
        url = f"/widget/{self.site_key}/conversations/{conversation}/stream"
        async with open_stream(self.http, url, self.headers, after, last_event_id) as reader:
            yield reader

    @asynccontextmanager
    async def watch(self, cursors: dict[int, int]) -> AsyncIterator[EventReader]:
        """The visitor's shared stream (what one tab holds for all), from ``cursors``."""
        url = f"/widget/{self.site_key}/stream"
        query = {"watch": watch_param(cursors)}
        async with open_stream(self.http, url, self.headers, None, None, query) as reader:
            yield reader

    async def close(self) -> None:
        await self.http.aclose()


def watch_param(cursors: dict[int, int]) -> str:
    return ",".join(f"{conversation}-{seq}" for conversation, seq in cursors.items())


class Agent:
    """What the dashboard does over HTTP: a session cookie and the CSRF header."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=15)
        self.csrf = ""

    async def login(self, email: str, password: str) -> None:
        response = await self.http.post(
            "/login", data={"email": email, "password": password},
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 200, response.text
        self.csrf = response.json()["csrf_token"]

    async def reply(self, conversation_id: int, body: str, *, note: bool = False,
                    client_id: str | None = None) -> httpx.Response:
        return await self.http.post(
            f"/conversations/{conversation_id}/messages", headers={"X-CSRF-Token": self.csrf},
            data={"body": body, "client_id": client_id or new_client_id(),
                  "note": "1" if note else ""},
        )

    async def signal(self, conversation_id: int, kind: str, *, note: bool = False
                     ) -> httpx.Response:
        """Viewing, typing, stopped or left, as the dashboard tells (see chat/signals.py)."""
        return await self.act(conversation_id, "signal", kind=kind, note="1" if note else "")

    async def act(self, conversation_id: int, action: str, **data: str) -> httpx.Response:
        return await self.http.post(f"/conversations/{conversation_id}/{action}",
                                    headers={"X-CSRF-Token": self.csrf}, data=data)

    @asynccontextmanager
    async def stream(self, conversation_id: int | None = None, after: int | None = None,
                     last_event_id: str | None = None, watch: dict[int, int] | None = None,
                     inbox: str | None = None) -> AsyncIterator[EventReader]:
        query = {"conversation": str(conversation_id)} if conversation_id else {}
        if watch is not None:
            query["watch"] = watch_param(watch)
        if inbox is not None:
            query["inbox"] = inbox
        async with open_stream(self.http, "/stream", {}, after, last_event_id, query) as reader:
            yield reader

    async def close(self) -> None:
        await self.http.aclose()


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], after: int | None,
    last_event_id: str | None, query: dict[str, str] | None = None,
) -> AsyncIterator[EventReader]:
    headers = dict(headers)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    params = dict(query or {})
    if after is not None:
        params["after"] = str(after)
    timeout = httpx.Timeout(10.0, read=None)
    async with http.stream("GET", url, headers=headers, params=params, timeout=timeout) as resp:
        assert resp.status_code == 200, (resp.status_code, await resp.aread())
        assert resp.headers["content-type"].startswith("text/event-stream")
        reader = EventReader(resp)
        hello = await reader.next()
        assert hello.event == "hello", hello
        yield reader
