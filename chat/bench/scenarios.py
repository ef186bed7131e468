"""The named scenarios of the capacity report, each run against the product and the floor.

Every scenario goes through the real HTTP endpoints with every message stored; the floor
(see :mod:`chat.bench.floor`) gets the same client, load and machine in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from chat import db
from chat.actions.agents import insert_agent, prepare_agent
from chat.bench import server as servers
from chat.bench.load import Latencies, Load
from chat.bench.server import Server, ServerUsage, free_port
from chat.queries import sites as site_queries
from chat.signals import TYPING_REFRESH

Result = dict[str, Any]
PASSWORD = "bench-password-0123"


@dataclass(frozen=True)
class Shape:
    """The load of a scenario."""

    conversations: int
    streams: int
    agents: int = 0
    rate: float = 0.0
    duration: float = 20.0

    def scaled(self, quick: bool) -> Shape:
        if not quick:
            return self
        return dataclasses.replace(self, conversations=max(10, self.conversations // 10),
                                   streams=max(20, self.streams // 10),
                                   agents=min(self.agents, 5), rate=self.rate / 5,
                                   duration=min(self.duration, 4.0))


@dataclass
class Target:
    """One side of a comparison: the product, or the floor."""

    name: str
    server: Server
    site_key: str
    logins: list[tuple[str, str]]


async def _loaded(target: Target, shape: Shape) -> Load:
    load = Load(target.server.host, target.server.port, target.site_key)
    await load.start_conversations(shape.conversations)
    await load.sign_in_agents(target.logins[:shape.agents])
    await load.open_streams(shape.streams)
    return load


def _figures(latencies: Latencies) -> dict[str, float]:
    return {"p50": round(latencies.ms(50), 2), "p90": round(latencies.ms(90), 2),
            "p99": round(latencies.ms(99), 2), "max": round(latencies.max_ms(), 2)}


async def _step(load: Load, target: Target, rate: float, duration: float,
                during: Callable[[], None] | None = None) -> Result:
    """Post at ``rate`` for ``duration`` on open streams; what the client measured."""
    load.reset()
    usage = ServerUsage(target.server.process)
    sampler = asyncio.create_task(usage.sample())
    lags = await target.server.delivery_lags()
    usage.begin()
    posting = await load.drive(rate, duration, during)
    await load.settle()
    cpu = usage.cpu_percent()
    sampler.cancel()
    lagged = await target.server.delivery_lags()
    server_p99 = None if lags is None or lagged is None else servers.within(lags, lagged, 0.99)
    tally = load.tally
    owed = load.visitor_deliveries_owed()
    agents = len(load.agent_cookies)
    return {
        "rate": rate, "achieved": round(len(tally.due) / posting, 1),
        "failed_posts": tally.failures.total(), "failures": dict(tally.failures),
        "visitor": _figures(tally.visitor),
        # What 99 % of deliveries took from publishing to their stream handling them, at most (a
        # histogram bound): the server's part of the p99, without the POST and the client.
        "server_lag_p99_ms": None if server_p99 is None else server_p99 * 1000,
        "agent": _figures(tally.agent) if agents else None,
        "delivered": len(tally.received), "owed": owed, "lost": owed - len(tally.received),
        "duplicated": tally.duplicates,
        "agent_rows_stale": tally.agent_rows_owed(agents) - tally.agent_rows_seen(),
        "cpu": cpu, "server_rss_mb": round(usage.peak_rss / 2**20, 1),
        "samples": tally.visitor.samples,
    }


def _held(step: Result, p99_ms: float, agent_p99_ms: float | None = None) -> bool:
    """Did a step hold its rate within the bounds?"""
    agent = step["agent"]
    return (step["achieved"] >= 0.95 * step["rate"] and step["lost"] == 0
            and step["visitor"]["p99"] <= p99_ms
            and (agent_p99_ms is None or agent is None or agent["p99"] <= agent_p99_ms))


async def steady(target: Target, shape: Shape) -> Result:
    load = await _loaded(target, shape)
    try:
        return await _step(load, target, shape.rate, shape.duration)
    finally:
        await load.close()


async def team(target: Target, shape: Shape, quick: bool) -> Result:
    """The target load, then higher rates until the bounds break (or, if the target
    broke them, lower rates until they hold): the highest held."""
    load = await _loaded(target, shape)
    try:
        result = await _step(load, target, shape.rate, shape.duration)
        held = shape.rate if _held(result, 50, 500) else 0.0
        rate, factor = shape.rate, 1.5 if held else 1 / 1.5
        for _ in range(0 if quick else 4):
            rate = round(rate * factor)
            step_held = _held(await _step(load, target, rate, 10), 50, 500)
            if step_held:
                held = max(held, rate)
            if step_held != (factor > 1):
                break  # rising, it broke; falling, it held
        result["highest_rate_held"] = held
        result["agents"] = shape.agents
        return result
    finally:
        await load.close()


async def ramp(target: Target, shape: Shape, quick: bool, p99_ms: float = 100) -> Result:
    """Rising rates until p99 passes ``p99_ms`` or the rate is not achieved."""
    load = await _loaded(target, shape)
    steps: list[Result] = []
    try:
        rate = shape.rate
        while True:
            step = await _step(load, target, rate, 3 if quick else 10)
            steps.append({k: v for k, v in step.items() if k != "samples"})
            if not _held(step, p99_ms) or len(steps) >= (2 if quick else 12):
                break
            rate += shape.rate
    finally:
        await load.close()
    held = [s["rate"] for s in steps if _held(s, p99_ms)]
    return {"steps": steps, "highest_rate_held": max(held, default=0.0)}


async def storm(target: Target, shape: Shape) -> Result:
    """Every visitor stream dropped at once, halfway through, and back from its cursor."""
    load = await _loaded(target, shape)
    back: list[asyncio.Task[float]] = []
    try:
        result = await _step(load, target, shape.rate, shape.duration,
                             lambda: back.append(asyncio.create_task(load.drop_and_reconnect())))
        result["reconnected_in_s"] = round(await back[0], 2) if back else None
        result["streams"] = shape.streams
        return result
    finally:
        await load.close()


async def typing(target: Target, shape: Shape) -> Result:
    """The same messages twice: alone, then with both sides typing all along: every visitor,
    and every agent in one of its conversations at a time (a signal every TYPING_REFRESH
    seconds each, as a page sends while keys are pressed)."""
    load = await _loaded(target, shape)
    try:
        quiet = await _step(load, target, shape.rate, shape.duration)
        typist = asyncio.create_task(load.type_along(TYPING_REFRESH))
        try:
            typed = await _step(load, target, shape.rate, shape.duration)
            typed["typing_signals_per_s"] = round(load.tally.signals / shape.duration, 1)
            typed["agent_typing_signals_per_s"] = round(
                load.tally.agent_signals / shape.duration, 1)
        finally:
            typist.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typist
        for step in (quiet, typed):
            step.pop("samples", None)  # the two runs are compared by their figures
        return {"without_typing": quiet, "with_typing": typed,
                "conversations": shape.conversations, "agents": shape.agents}
    finally:
        await load.close()


async def idle(target: Target, shape: Shape, database_url: str | None,
               quiet: float) -> Result:
    """Open streams that hear nothing: memory per stream, queries, CPU, GC pauses."""
    usage = ServerUsage(target.server.process)
    before = usage.rss()
    load = Load(target.server.host, target.server.port, target.site_key)
    await load.start_conversations(shape.conversations)
    rss_before = usage.rss()
    opened = await load.open_streams(shape.streams)
    # PostgreSQL counts an idle backend's transactions up to 10 s late (its statistics
    # flush): the catch-ups of the last streams opened must not count as idle queries.
    await asyncio.sleep(11)
    open_rss = usage.rss()
    commits = await _commits(database_url)
    pauses_open = await target.server.gc_pauses()
    usage.begin()
    started = time.perf_counter()
    await asyncio.sleep(quiet)
    cpu = usage.cpu_percent()
    elapsed = time.perf_counter() - started
    after = await _commits(database_url)
    pauses = await target.server.gc_pauses()
    await load.close()
    return {
        "streams": shape.streams, "opened_in_s": round(opened, 1),
        "server_rss_mb": {"start": round(before / 2**20, 1), "open": round(open_rss / 2**20, 1)},
        "kib_per_stream": round((open_rss - rss_before) / 1024 / shape.streams, 1),
        "queries_per_s": (None if commits is None or after is None
                          else round((after - commits - 1) / elapsed, 2)),
        "cpu": cpu,
        # The longest since start-up (the opening burst included), and those while idle.
        "gc_pause_max_ms": None if pauses is None else round(pauses.longest * 1000, 1),
        "gc_pauses_idle": (None if pauses is None or pauses_open is None
                           else pauses.since(pauses_open)),
    }


async def _commits(database_url: str | None) -> int | None:
    """The database's committed transactions so far (each statement outside a
    transaction commits one)."""
    if database_url is None:
        return None
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return count
    finally:
        await conn.close()


# ---- the targets -------------------------------------------------------------------------

async def prepare_product(database_url: str, agents: int) -> tuple[str, list[tuple[str, str]]]:
    """The site key, and ``agents`` new accounts to sign in with (created like
    ``chat create-agent``: set-up, not the load being measured)."""
    run = uuid.uuid4().hex[:8]
    first = await prepare_agent(email=f"bench-{run}-0@example.com", name="Bench agent 0",
                                password=PASSWORD)
    logins = []
    async with db.connect(database_url) as conn:
        site_key: str = (await site_queries.all_sites(conn))[0]["public_key"]
        for n in range(agents):
            email = f"bench-{run}-{n}@example.com"
            # One hash for every account: hashing is slow by design, and it is the same work.
            await insert_agent(conn, dataclasses.replace(first, email=email,
                                                         name=f"Bench agent {n}"))
            logins.append((email, PASSWORD))
    return site_key, logins


@contextlib.contextmanager
def redis_url() -> Iterator[str | None]:
    """``REDIS_URL``, else a ``redis-server`` of our own if one is installed, else None."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def product_target(database_url: str, agents: int, workers: int = 1,
                   env: dict[str, str] | None = None) -> Iterator[Target]:
    site_key, logins = asyncio.run(prepare_product(database_url, agents))
    with servers.product(workers, env) as server:
        yield Target("product", server, site_key, logins)


@contextlib.contextmanager
def floor_target(agents: int) -> Iterator[Target]:
    with servers.floor() as server:
        yield Target("floor", server, "floor", [("floor@example.com", "floor")] * agents)
