"""``chat bench``: live delivery measured end to end, through the real HTTP endpoints.

It opens N visitor streams over M conversations, posts visitor messages at a steady rate
(each persisted, published and streamed like any other), and reports how many deliveries
arrived of those expected, duplicates, the latency from starting the POST to reading the
entry on each stream, and the server's CPU and memory.

The client speaks just enough HTTP/1.1 over asyncio streams (keep-alive requests,
chunked SSE bodies) to stay cheap next to the server it measures: on a small machine the
two share the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

CLIENT_ID = re.compile(rb'data-client-id="([^"]+)"')


@dataclass
class BenchConfig:
    url: str | None = None
    conversations: int = 1000
    streams: int = 2000
    rate: float = 500.0
    duration: float = 30.0
    workers: int = 1
    connections: int = 64  # keep-alive connections for POSTs
    site_key: str | None = None


class Http:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}",
                 f"Content-Length: {len(body)}", "Accept: application/json"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, response_headers = await read_head(self.reader)
        length = int(response_headers.get("content-length", "0"))
        return status, await self.reader.readexactly(length)


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
    """The raw events of one SSE response (chunked transfer decoded)."""
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


@dataclass
class Tally:
    sent_at: dict[str, float] = field(default_factory=dict)  # client id -> POST start
    conversation_of: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    received: set[tuple[int, str]] = field(default_factory=set)  # (stream, client id)
    duplicates: int = 0
    failed_posts: int = 0
    streams_open: int = 0

    def receive(self, stream: int, frame: bytes, now: float) -> None:
        match = CLIENT_ID.search(frame)
        if match is None:
            return
        client_id = match.group(1).decode()
        sent = self.sent_at.get(client_id)
        if sent is None:
            return  # a message from set-up
        key = (stream, client_id)
        if key in self.received:
            self.duplicates += 1
            return
        self.received.add(key)
        self.latencies.append(now - sent)


@dataclass
class Visitor:
    conversation_id: int
    token: str
    last_seq: int


class Bench:
    def __init__(self, config: BenchConfig, base_url: str, site_key: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.config = config
        self.site_key = site_key
        self.tally = Tally()
        self.visitors: list[Visitor] = []

    async def setup(self) -> None:
        """Start the conversations, a few at a time."""
        pool = [Http(self.host, self.port) for _ in range(16)]

        async def start(http: Http, n: int) -> None:
            body = json.dumps({"body": f"bench conversation {n}"}).encode()
            status, raw = await http.request(
                "POST", f"/widget/{self.site_key}/conversations", body,
                {"Content-Type": "application/json"},
            )
            if status != 201:
                raise RuntimeError(f"starting a conversation answered {status}: {raw[:200]!r}")
            data = json.loads(raw)
            self.visitors.append(Visitor(data["conversation"]["id"], data["visitor_token"],
                                         data["message"]["seq"]))

        for first in range(0, self.config.conversations, len(pool)):
            count = min(len(pool), self.config.conversations - first)
            await asyncio.gather(*(start(pool[i], first + i) for i in range(count)))

    async def listen(self, index: int, ready: asyncio.Event) -> None:
        visitor = self.visitors[index % len(self.visitors)]
        path = (f"/widget/{self.site_key}/conversations/{visitor.conversation_id}/stream"
                f"?after={visitor.last_seq}")
        async for event in sse_events(self.host, self.port, path,
                                      {"X-Visitor-Token": visitor.token}):
            if event.startswith(b"event: hello"):
                self.tally.streams_open += 1
                if self.tally.streams_open == self.config.streams:
                    ready.set()
            self.tally.receive(index, event, time.perf_counter())

    async def post(self, http: Http, visitor: Visitor) -> None:
        client_id = uuid.uuid4().hex
        body = json.dumps({"body": f"bench message {client_id}", "client_id": client_id})
        self.tally.conversation_of[client_id] = visitor.conversation_id
        self.tally.sent_at[client_id] = time.perf_counter()
        status, _ = await http.request(
            "POST", f"/widget/{self.site_key}/conversations/{visitor.conversation_id}/messages",
            body.encode(), {"Content-Type": "application/json", "X-Visitor-Token": visitor.token},
        )
        if status != 201:
            self.tally.failed_posts += 1
            del self.tally.sent_at[client_id], self.tally.conversation_of[client_id]

    async def drive(self) -> None:
        """Post at the configured rate for the configured time, never more in flight than
        there are connections (a late POST waits, and shows up in the latency)."""
        idle: asyncio.Queue[Http] = asyncio.Queue()
        for _ in range(self.config.connections):
            idle.put_nowait(Http(self.host, self.port))
        interval = 1.0 / self.config.rate
        total = int(self.config.rate * self.config.duration)
        start = time.perf_counter()
        tasks = set()

        async def one(visitor: Visitor) -> None:
            http = await idle.get()
            try:
                await self.post(http, visitor)
            finally:
                idle.put_nowait(http)

        for n in range(total):
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(random.choice(self.visitors)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    def expected(self) -> int:
        """Deliveries owed: each stored message, once to every stream of its conversation."""
        streams_of: dict[int, int] = {}
        for index in range(self.config.streams):
            conversation = self.visitors[index % len(self.visitors)].conversation_id
            streams_of[conversation] = streams_of.get(conversation, 0) + 1
        return sum(streams_of.get(c, 0) for c in self.tally.conversation_of.values())


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def local_processes(name: str) -> list[psutil.Process]:
    """This machine's processes called ``name`` (PostgreSQL or Redis, when they run here)."""
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == name]


@dataclass
class ServerUsage:
    """CPU and memory of the app's processes, and CPU of what else shares the machine."""

    process: psutil.Process
    cpu_start: dict[str, float] = field(default_factory=dict)
    wall_start: float = 0.0
    peak_rss: int = 0

    def tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return [self.process, *self.process.children(recursive=True)]
        return []

    def groups(self) -> dict[str, list[psutil.Process]]:
        return {"server": self.tree(), "bench_client": [psutil.Process()],
                "postgres": local_processes("postgres"),
                "redis": local_processes("redis-server")}

    def cpu(self) -> dict[str, float]:
        return {group: cpu_seconds(procs) for group, procs in self.groups().items()}

    def rss(self) -> int:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def begin(self) -> None:
        self.cpu_start, self.wall_start = self.cpu(), time.perf_counter()

    async def sample(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, self.rss())
            await asyncio.sleep(0.5)

    def cpu_percent(self) -> dict[str, float]:
        """Percent of one core, by group, since :meth:`begin` (processes that started or
        ended in between count only partly)."""
        wall = time.perf_counter() - self.wall_start
        return {group: round(100.0 * (seconds - self.cpu_start.get(group, 0.0)) / wall, 1)
                for group, seconds in self.cpu().items()}


async def measure(config: BenchConfig, base_url: str, site_key: str,
                  usage: ServerUsage | None) -> dict[str, object]:
    bench = Bench(config, base_url, site_key)
    await bench.setup()
    ready = asyncio.Event()
    listeners = [asyncio.create_task(bench.listen(i, ready)) for i in range(config.streams)]
    async with asyncio.timeout(120):
        await ready.wait()
    sampler = asyncio.create_task(usage.sample()) if usage else None
    if usage:
        usage.begin()
    started = time.perf_counter()
    await bench.drive()
    posting = time.perf_counter() - started
    expected = bench.expected()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):  # let the last deliveries arrive
            while len(bench.tally.received) < expected:  # noqa: ASYNC110 (a count, polled)
                await asyncio.sleep(0.1)
    cpu = usage.cpu_percent() if usage else None
    for task in [*listeners, *([sampler] if sampler else [])]:
        task.cancel()
    await asyncio.gather(*listeners, *([sampler] if sampler else []), return_exceptions=True)
    return summarize(config, bench.tally, expected, posting, cpu,
                     usage.peak_rss if usage else None)


def summarize(config: BenchConfig, tally: Tally, expected: int, posting: float,
              cpu: dict[str, float] | None, rss: int | None) -> dict[str, object]:
    ms = sorted(1000 * latency for latency in tally.latencies)

    def pct(q: float) -> float:
        return round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) if ms else float("nan")

    sent = len(tally.sent_at)
    return {
        "conversations": config.conversations, "streams": config.streams,
        "target_rate": config.rate, "messages_sent": sent,
        "achieved_rate": round(sent / posting, 1), "failed_posts": tally.failed_posts,
        "deliveries_expected": expected, "delivered": len(tally.received),
        "lost": expected - len(tally.received), "duplicates": tally.duplicates,
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                       "max": round(ms[-1], 2) if ms else None,
                       "mean": round(statistics.fmean(ms), 2) if ms else None},
        "cpu_percent_of_one_core": cpu,
        "server_peak_rss_mb": round(rss / 2**20, 1) if rss else None,
        "machine": f"{os.cpu_count()} CPUs, {round(psutil.virtual_memory().total / 2**30)} GiB",
    }


@contextlib.contextmanager
def own_server(config: BenchConfig) -> Iterator[tuple[str, psutil.Process]]:
    """A ``chat serve`` subprocess on a free port, with the caller's environment."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = Path(os.environ.get("CHAT_DATA_DIR", ".chat")) / "bench-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chat", "serve", "--port", str(port),
             "--workers", str(config.workers)],
            # A load test opens conversation after conversation, and stream after stream,
            # from one address.
            env={**os.environ, "LOG_LEVEL": "WARNING", "RATE_LIMITS": "off",
                 "STREAMS_PER_ADDRESS": "1000000", "STREAMS_PER_CLIENT": "1000000"},
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_healthy(url, process, log))
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)


async def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see {log}")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            status, _ = await Http(parts.hostname or "", parts.port or 80).request(
                "GET", "/healthz")
            if status == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the server did not become healthy; see {log}")
