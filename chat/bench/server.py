"""The servers a bench runs against, and what they cost: CPU, memory, queries, GC pauses.

``chat serve`` (the product) and the floor each run as their own subprocess on a free
port, with the caller's environment, so the client never shares their event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from chat.bench.client import Http

# A load test opens conversation after conversation, and stream after stream, from one
# address: the limits that protect a real deployment would stop it.
UNLIMITED = {"RATE_LIMITS": "off", "STREAMS_PER_ADDRESS": "1000000",
             "STREAMS_PER_CLIENT": "1000000", "LOG_LEVEL": "WARNING"}


@dataclass
class Server:
    url: str
    process: psutil.Process
    metrics_token: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    async def gc_pauses(self) -> GcPauses | None:
        """The garbage-collection pauses the server measured so far, if it measures them."""
        body = await self._metrics()
        if body is None:
            return None
        longest = re.search(rb"^chat_gc_pause_max_seconds (\S+)$", body, re.MULTILINE)
        return GcPauses(float(longest.group(1)) if longest else 0.0,
                        _histogram(body, b"chat_gc_pause_seconds"))

    async def delivery_lags(self) -> dict[float, float] | None:
        """How many deliveries its streams handled within each bucket's bound (seconds)
        of their publishing, so far: the server's share of a latency, without the client's."""
        body = await self._metrics()
        return None if body is None else _histogram(body, b"chat_delivery_lag_seconds")

    async def _metrics(self) -> bytes | None:
        if self.metrics_token is None:
            return None
        http = Http(self.host, self.port)
        status, body = await http.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"})
        http.close()
        return body if status == 200 else None


def _histogram(body: bytes, name: bytes) -> dict[float, float]:
    """A Prometheus histogram's cumulative counts by bound, all label sets together."""
    buckets: dict[float, float] = {}
    for bound, count in re.findall(rb"^" + name + rb'_bucket{.*le="([^"]+)"} (\S+)$', body,
                                   re.MULTILINE):
        buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(count)
    return buckets


def within(before: dict[float, float], after: dict[float, float], share: float) -> float | None:
    """The smallest bucket bound that ``share`` of what was counted between two readings of a
    histogram stayed within (None if nothing was)."""
    counts = {bound: n - before.get(bound, 0.0) for bound, n in after.items()}
    total = counts.get(math.inf, 0.0)
    if not total:
        return None
    return min(bound for bound, n in counts.items() if n >= share * total)


@dataclass(frozen=True)
class GcPauses:
    """What the server's ``chat_gc_pause_*`` metrics say: the longest pause since it
    started, and how many pauses took at most each bucket's bound, in seconds (all
    generations together)."""

    longest: float
    at_most: dict[float, float]

    def since(self, earlier: GcPauses) -> dict[str, float | int]:
        """The pauses after ``earlier``: how many, how many over 20 ms, and the bound
        that all of them stayed within (in ms)."""
        def count(bound: float) -> float:
            return self.at_most.get(bound, 0.0) - earlier.at_most.get(bound, 0.0)

        bound = within(earlier.at_most, self.at_most, 1.0)
        return {"pauses": int(count(math.inf)),
                "over_20_ms": int(count(math.inf) - count(0.02)),
                "all_within_ms": 0.0 if bound is None else bound * 1000}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def product(workers: int = 1, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``chat serve`` on a free port."""
    token = secrets.token_urlsafe(16)
    port = free_port()
    command = [sys.executable, "-m", "chat", "serve", "--port", str(port),
               "--workers", str(workers)]
    with _process(command, port, {**UNLIMITED, "METRICS_TOKEN": token, **(env or {})},
                  "bench-server") as process:
        yield Server(f"http://127.0.0.1:{port}", process, token)


@contextlib.contextmanager
def floor() -> Iterator[Server]:
    """The floor (see :mod:`chat.bench.floor`) on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "chat.bench.floor:app",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with _process(command, port, {}, "bench-floor") as process:
        yield Server(f"http://127.0.0.1:{port}", process)


@contextlib.contextmanager
def _process(command: list[str], port: int, env: dict[str, str],
             name: str) -> Iterator[psutil.Process]:
    log = Path(os.environ.get("CHAT_DATA_DIR", ".chat")) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        asyncio.run(_wait_healthy(f"http://127.0.0.1:{port}", process, log))
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)


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
