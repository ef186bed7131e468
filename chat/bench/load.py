"""The load: conversations, visitor and agent streams, and messages posted on schedule.

Posting is open-loop: message n is due at ``start + n / rate`` whatever happened before,
and its latency counts from then, so a server that falls behind shows it instead of
slowing the client down with it (no coordinated omission).

Visitor latency: from a message's due time to its entry on each stream of its
conversation (history: every entry must arrive, once). Agent latency: from a message's due
time to the first inbox row of its conversation, on each agent stream, that shows it or a
later message (rows are state: a newer row stands for every message before it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from chat.bench.client import Http, sse_events

CLIENT_ID = re.compile(rb'data-client-id="([0-9a-f]{32})"')
ROW = re.compile(rb'id="conversation-([0-9]+)"')
PREVIEW_ID = re.compile(rb"bench message ([0-9a-f]{32})")
AGENT_TURNS = 5  # typing rounds an agent spends in one conversation before the next
ENTRY_ID = re.compile(rb"^id: ([0-9]+)-([0-9]+)$", re.MULTILINE)
MAX_CONNECTIONS = 256


def histogram() -> HdrHistogram:
    return HdrHistogram(1, 120_000_000, 3)  # microseconds, up to two minutes


@dataclass
class Latencies:
    """One kind of delivery: an HdrHistogram, and (second, latency) samples for plots."""

    histogram: HdrHistogram = field(default_factory=histogram)
    samples: list[tuple[float, float]] = field(default_factory=list)

    def record(self, due: float, now: float, origin: float) -> None:
        latency = max(now - due, 0.0)
        self.histogram.record_value(max(1, int(latency * 1e6)))
        self.samples.append((due - origin, latency))

    def ms(self, percentile: float) -> float:
        if self.histogram.get_total_count() == 0:
            return float("nan")
        value: int = self.histogram.get_value_at_percentile(percentile)
        return value / 1000

    def max_ms(self) -> float:
        top: int = self.histogram.get_max_value() if self.histogram.get_total_count() else 0
        return top / 1000


@dataclass
class Visitor:
    conversation_id: int
    token: str
    last_seq: int


@dataclass
class Tally:
    origin: float = field(default_factory=time.perf_counter)
    due: dict[str, float] = field(default_factory=dict)  # client id -> due time
    conversation_of: dict[str, int] = field(default_factory=dict)
    sent_order: dict[int, list[str]] = field(default_factory=dict)  # per conversation
    visitor: Latencies = field(default_factory=Latencies)
    agent: Latencies = field(default_factory=Latencies)
    received: set[tuple[int, str]] = field(default_factory=set)  # (stream, client id)
    agent_seen: dict[tuple[int, int], int] = field(default_factory=dict)  # (agent, conv) -> n
    duplicates: int = 0
    signals: int = 0  # visitors' typing signals the server took (see Load.type_along)
    agent_signals: int = 0  # and agents'

    failures: Counter[int] = field(default_factory=Counter)  # by HTTP status, 0: no answer

    def scheduled(self, client_id: str, conversation_id: int, due: float) -> None:
        self.due[client_id] = due
        self.conversation_of[client_id] = conversation_id
        self.sent_order.setdefault(conversation_id, []).append(client_id)

    def failed(self, client_id: str, status: int) -> None:
        self.failures[status] += 1
        del self.due[client_id]
        order = self.sent_order[self.conversation_of.pop(client_id)]
        order.remove(client_id)

    def visitor_event(self, stream: int, event: bytes, now: float) -> None:
        match = CLIENT_ID.search(event)
        if match is None or (client_id := match.group(1).decode()) not in self.due:
            return  # not an entry, or a message from set-up
        key = (stream, client_id)
        if key in self.received:
            self.duplicates += 1
            return
        self.received.add(key)
        self.visitor.record(self.due[client_id], now, self.origin)

    def agent_event(self, agent: int, event: bytes, now: float) -> None:
        preview = PREVIEW_ID.search(event)
        row = ROW.search(event)
        if preview is None or row is None:
            return
        conversation = int(row.group(1))
        order = self.sent_order.get(conversation, [])
        client_id = preview.group(1).decode()
        if client_id not in self.due:
            return
        shown = order.index(client_id) + 1
        seen = self.agent_seen.get((agent, conversation), 0)
        for earlier in order[seen:shown]:
            self.agent.record(self.due[earlier], now, self.origin)
        self.agent_seen[(agent, conversation)] = max(seen, shown)

    def agent_rows_owed(self, agents: int) -> int:
        return agents * len(self.due)

    def agent_rows_seen(self) -> int:
        return sum(self.agent_seen.values())


class Load:
    """Conversations and streams on one server, and the messages posted to them."""

    def __init__(self, host: str, port: int, site_key: str) -> None:
        self.host, self.port, self.site_key = host, port, site_key
        self.tally = Tally()
        self.visitors: list[Visitor] = []
        self.streams: dict[int, asyncio.Task[None]] = {}
        self.stream_cursor: dict[int, int] = {}  # visitor stream -> last seq received
        self.agent_cookies: list[str] = []
        self.agent_csrf: list[str] = []  # each session's token, for the agents' own POSTs
        self.agent_streams: list[asyncio.Task[None]] = []
        self.hellos = 0
        self.hello = asyncio.Event()
        self.expect_hellos = 0

    async def start_conversations(self, count: int) -> None:
        pool = [Http(self.host, self.port) for _ in range(16)]

        async def start(http: Http, n: int) -> None:
            status, raw = await http.post_json(f"/widget/{self.site_key}/conversations",
                                               {"body": f"bench conversation {n}"})
            if status != 201:
                raise RuntimeError(f"starting a conversation answered {status}: {raw[:200]!r}")
            data = json.loads(raw)
            self.visitors.append(Visitor(data["conversation"]["id"], data["visitor_token"],
                                         data["message"]["seq"]))

        for first in range(0, count, len(pool)):
            await asyncio.gather(*(start(pool[i], first + i)
                                   for i in range(min(len(pool), count - first))))
        for http in pool:
            http.close()

    async def sign_in_agents(self, logins: list[tuple[str, str]]) -> None:
        # A few at a time: the server sheds sign-ins beyond the password hashes it runs at once.
        at_once = asyncio.Semaphore(4)

        async def login(email: str, password: str) -> tuple[str, str]:
            http = Http(self.host, self.port)
            body = f"email={email}&password={password}".encode()
            async with at_once:
                status, raw = await http.request(
                    "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
            http.close()
            if status != 200 or http.cookie is None:
                raise RuntimeError(f"signing in answered {status}: {raw[:200]!r}")
            return http.cookie, json.loads(raw)["csrf_token"]

        sessions = await asyncio.gather(*(login(e, p) for e, p in logins))
        self.agent_cookies = [cookie for cookie, _ in sessions]
        self.agent_csrf = [csrf for _, csrf in sessions]

    def _saw_hello(self) -> None:
        self.hellos += 1
        if self.hellos >= self.expect_hellos:
            self.hello.set()

    async def _visitor_stream(self, index: int) -> None:
        visitor = self.visitors[index % len(self.visitors)]
        after = self.stream_cursor.get(index, visitor.last_seq)
        path = (f"/widget/{self.site_key}/conversations/{visitor.conversation_id}/stream"
                f"?after={after}")
        async for event in sse_events(self.host, self.port, path,
                                      {"X-Visitor-Token": visitor.token}):
            if event.startswith(b"event: hello"):
                self._saw_hello()
            cursor = ENTRY_ID.search(event)
            if cursor is not None:
                self.stream_cursor[index] = int(cursor.group(2))
            self.tally.visitor_event(index, event, time.perf_counter())

    async def _agent_stream(self, index: int) -> None:
        async for event in sse_events(self.host, self.port, "/stream?inbox=open",
                                      {"Cookie": self.agent_cookies[index]}):
            if event.startswith(b"event: hello"):
                self._saw_hello()
            self.tally.agent_event(index, event, time.perf_counter())

    async def open_streams(self, visitor_streams: int, within: float = 180) -> float:
        """Open every stream (and the agents' inboxes); return the seconds it took."""
        started = self._expect_hellos(visitor_streams + len(self.agent_cookies))
        self._open_visitor_streams(range(visitor_streams))
        self.agent_streams = [asyncio.create_task(self._agent_stream(i))
                              for i in range(len(self.agent_cookies))]
        return await self._hellos_heard(started, within)

    async def drop_and_reconnect(self, within: float = 60) -> float:
        """Close every visitor stream at once, then reconnect each from its cursor, as a
        browser does; return the seconds until all are back."""
        indexes = list(self.streams)
        for task in self.streams.values():
            task.cancel()
        await asyncio.gather(*self.streams.values(), return_exceptions=True)
        started = self._expect_hellos(len(indexes))
        self._open_visitor_streams(indexes)
        return await self._hellos_heard(started, within)

    def _open_visitor_streams(self, indexes: Iterable[int]) -> None:
        for index in indexes:
            self.streams[index] = asyncio.create_task(self._visitor_stream(index))

    def _expect_hellos(self, count: int) -> float:
        """Count ``hello`` events afresh, until ``count``; return when counting started."""
        self.hello.clear()
        self.hellos, self.expect_hellos = 0, count
        return time.perf_counter()

    async def _hellos_heard(self, started: float, within: float) -> float:
        """Wait until every expected stream said hello; the seconds since ``started``."""
        async with asyncio.timeout(within):
            await self.hello.wait()
        return time.perf_counter() - started

    async def drive(self, rate: float, duration: float,
                    during: Callable[[], None] | None = None) -> float:
        """Post ``rate`` messages a second for ``duration`` seconds; return the seconds it
        took to send them all. ``during`` is called halfway through."""
        idle: list[Http] = []
        opened = 0
        free = asyncio.Condition()

        async def one(visitor: Visitor, client_id: str) -> None:
            nonlocal opened
            async with free:
                if not idle and opened < MAX_CONNECTIONS:
                    opened += 1
                    idle.append(Http(self.host, self.port))
                await free.wait_for(lambda: bool(idle))
                http = idle.pop()
            try:
                await self._post(http, visitor, client_id)
            finally:
                async with free:
                    idle.append(http)
                    free.notify()

        total = int(rate * duration)
        start = time.perf_counter()
        tasks = set()
        for n in range(total):
            due = start + n / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            if during is not None and n == total // 2:
                during()
            visitor = random.choice(self.visitors)
            client_id = uuid.uuid4().hex
            self.tally.scheduled(client_id, visitor.conversation_id, due)
            task = asyncio.create_task(one(visitor, client_id))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        for http in idle:
            http.close()
        return time.perf_counter() - start

    async def _post(self, http: Http, visitor: Visitor, client_id: str) -> None:
        try:
            status, _ = await http.post_json(
                f"/widget/{self.site_key}/conversations/{visitor.conversation_id}/messages",
                {"body": f"bench message {client_id}", "client_id": client_id},
                {"X-Visitor-Token": visitor.token})
        except (OSError, asyncio.IncompleteReadError):
            http.close()
            status = 0
        if status != 201:
            self.tally.failed(client_id, status)

    async def type_along(self, every: float, connections: int = 16) -> None:
        """Until cancelled, every visitor signals typing once every ``every`` seconds (as a
        page does while keys are pressed: a start, then refreshes), and so does every agent,
        in one conversation of its share at a time, moving on every AGENT_TURNS rounds as one
        answering many customers in turn. The signals of a round are spread over it."""
        pool = [Http(self.host, self.port) for _ in range(connections)]
        try:
            for turn in itertools.count():
                jobs = [*(functools.partial(self._typing, visitor, turn > 0)
                          for visitor in self.visitors),
                        *(functools.partial(self._agent_typing, agent, turn)
                          for agent in range(len(self.agent_cookies)))]
                gap = every / max(1, len(jobs))
                for first in range(0, len(jobs), connections):
                    started = time.perf_counter()
                    batch = jobs[first:first + connections]
                    await asyncio.gather(*(job(http) for http, job in zip(pool, batch,
                                                                          strict=False)))
                    if (rest := gap * len(batch) - (time.perf_counter() - started)) > 0:
                        await asyncio.sleep(rest)
        finally:
            for http in pool:
                http.close()

    async def _typing(self, visitor: Visitor, refresh: bool, http: Http) -> None:
        path = f"/widget/{self.site_key}/conversations/{visitor.conversation_id}/typing"
        data = {"typing": "1", **({"refresh": "1"} if refresh else {})}
        if await _signal(http, path, data, {"X-Visitor-Token": visitor.token}):
            self.tally.signals += 1

    async def _agent_typing(self, agent: int, turn: int, http: Http) -> None:
        share = self.visitors[agent::len(self.agent_cookies)]  # round-robin, like assignment
        if not share:
            return
        conversation = share[turn // AGENT_TURNS % len(share)].conversation_id
        data = {"kind": "typing", **({"refresh": "1"} if turn % AGENT_TURNS else {})}
        headers = {"Cookie": self.agent_cookies[agent], "X-CSRF-Token": self.agent_csrf[agent]}
        if await _signal(http, f"/conversations/{conversation}/signal", data, headers):
            self.tally.agent_signals += 1

    def visitor_deliveries_owed(self) -> int:
        streams_of: dict[int, int] = {}
        for index in self.streams:
            conversation = self.visitors[index % len(self.visitors)].conversation_id
            streams_of[conversation] = streams_of.get(conversation, 0) + 1
        return sum(streams_of.get(c, 0) for c in self.tally.conversation_of.values())

    async def settle(self, within: float = 10) -> None:
        """Wait for the last deliveries (up to ``within`` seconds)."""
        owed = self.visitor_deliveries_owed()
        agents = len(self.agent_cookies)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while (len(self.tally.received) < owed  # noqa: ASYNC110 (counts, polled)
                       or self.tally.agent_rows_seen() < self.tally.agent_rows_owed(agents)):
                    await asyncio.sleep(0.1)

    def reset(self) -> None:
        """Forget the measurements (between the steps of a ramp); streams stay open."""
        self.tally = Tally()

    async def close(self) -> None:
        tasks = [*self.streams.values(), *self.agent_streams]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _signal(http: Http, path: str, data: dict[str, str], headers: dict[str, str]) -> bool:
    """POST one typing signal; whether the server took it (a dropped connection is not)."""
    try:
        status, _ = await http.post_json(path, data, headers)
    except (OSError, asyncio.IncompleteReadError):
        http.close()
        return False
    return status == 204
