"""Running the scenarios, and the report: a Markdown table, JSON and PNG plots.

Every product figure is printed next to the floor's from the same run, with their ratio.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import platform
from pathlib import Path
from typing import Any

import psutil

from chat.bench import SCENARIOS, scenarios
from chat.bench.scenarios import Result, Shape, Target

logger = logging.getLogger(__name__)

SHAPES = {
    "team": Shape(conversations=500, streams=1000, agents=100, rate=200),
    "steady": Shape(conversations=1000, streams=2000, agents=20, rate=500),
    "ramp": Shape(conversations=1000, streams=2000, rate=300),
    "idle": Shape(conversations=1000, streams=10_000),
    "storm": Shape(conversations=2500, streams=5000, rate=200),
    "scale-out": Shape(conversations=1000, streams=2000, rate=300),
    "typing": Shape(conversations=1000, streams=1000, agents=20, rate=200),
    # The team's load with people typing: the awareness issue's bound on what typing may cost.
    "team-typing": Shape(conversations=500, streams=1000, agents=100, rate=200),
}
NAMES = list(SCENARIOS)

def idle_pauses(pauses: dict[str, float] | None) -> str:
    if pauses is None:
        return "not measured"
    return (f"{pauses['pauses']}, {pauses['over_20_ms']} over 20 ms, all within "
            f"{pauses['all_within_ms']:g} ms")


def run(names: list[str], database_url: str, out: Path, quick: bool) -> dict[str, Any]:
    """Each scenario against the product and the floor; the report, written to ``out``."""
    results: dict[str, Any] = {"machine": machine()}
    for name in names:
        shape = SHAPES[name].scaled(quick)
        print(f"bench: {name} ({shape})", flush=True)
        results[name] = scenario(name, shape, database_url, quick)
    out.mkdir(parents=True, exist_ok=True)
    samples = {name: {side: r.pop("samples", None) for side, r in result.items()
                      if isinstance(r, dict)}
               for name, result in results.items() if isinstance(result, dict)}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    (out / "report.md").write_text(table)
    print(table)
    plot(results, samples, out)
    return results


def scenario(name: str, shape: Shape, database_url: str, quick: bool) -> dict[str, Any]:
    def runner(target: Target, url: str | None) -> Result:
        match name:
            case "team":
                return asyncio.run(scenarios.team(target, shape, quick))
            case "steady":
                return asyncio.run(scenarios.steady(target, shape))
            case "ramp" | "scale-out":
                return asyncio.run(scenarios.ramp(target, shape, quick))
            case "idle":
                return asyncio.run(scenarios.idle(target, shape, url, 5 if quick else 30))
            case "storm":
                return asyncio.run(scenarios.storm(target, shape))
            case "typing" | "team-typing":
                return asyncio.run(scenarios.typing(target, shape))
        raise ValueError(name)

    if name == "scale-out":
        with scenarios.redis_url() as redis:
            if redis is None:
                print("bench: scale-out skipped: set REDIS_URL or install redis-server")
                return {"skipped": "no Redis"}
            with scenarios.product_target(database_url, 0, workers=2,
                                          env={"REDIS_URL": redis}) as target:
                return {"product": runner(target, database_url)}
    if name in ("typing", "team-typing"):  # the floor has no typing to compare with
        with scenarios.product_target(database_url, shape.agents) as target:
            return {"product": runner(target, database_url)}
    with scenarios.product_target(database_url, shape.agents) as target:
        product = runner(target, database_url)
    with scenarios.floor_target(shape.agents) as target:
        floor = runner(target, None)
    return {"product": product, "floor": floor}


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{round(psutil.virtual_memory().total / 2**30)} GiB, Python "
            f"{platform.python_version()}")


def ratio(product: float | None, floor: float | None) -> str:
    if not product or not floor or math.isnan(product) or math.isnan(floor):
        return "n/a"
    return f"{product / floor:.2f}x"


def _latency(result: Result, kind: str = "visitor") -> str:
    figures = result.get(kind)
    if not figures:
        return "n/a"
    return f"{figures['p50']:g} / {figures['p99']:g} / {figures['max']:g}"


def _cpu(result: Result) -> str:
    cpu = result.get("cpu") or {}
    return f"{cpu.get('server', 0):g} % / {cpu.get('bench_client', 0):g} %"


def markdown(results: dict[str, Any]) -> str:
    rows = [
        f"Machine: {results['machine']}. Latencies in ms (p50 / p99 / max), from each "
        "message's scheduled time; ratio = product p99 ÷ floor p99. CPU: percent of one "
        "core, server / load client.", "",
        "| scenario | offered → achieved msg/s | visitor latency | floor | p99 ratio "
        "| agent inbox latency | lost | duplicated | CPU | server RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name in ("team", "steady", "storm"):
        pair = results.get(name)
        if not pair:
            continue
        product, floor = pair["product"], pair["floor"]
        rows.append(
            f"| {name} | {product['rate']:g} → {product['achieved']:g} | {_latency(product)} "
            f"| {_latency(floor)} | {ratio(product['visitor']['p99'], floor['visitor']['p99'])} "
            f"| {_latency(product, 'agent')} | {product['lost']} | {product['duplicated']} "
            f"| {_cpu(product)} | {product['server_rss_mb']} MB |")
        if product.get("server_lag_p99_ms") is not None:
            notes.append(f"{name}: 99 % of the product's deliveries were handled by their stream "
                         f"within {product['server_lag_p99_ms']:g} ms of publishing (the "
                         "server's part of the p99; the rest is the POST, the load client "
                         "and the cores they share).")
        if name == "team":
            notes.append(f"team: highest rate a {product['agents']}-agent team held at "
                         f"visitor p99 ≤ 50 ms and agent p99 ≤ 500 ms: product "
                         f"{product.get('highest_rate_held')} msg/s, floor "
                         f"{floor.get('highest_rate_held')} msg/s.")
        if name == "storm":
            notes.append(f"storm: {product['streams']} streams dropped at once were all "
                         f"back in {product.get('reconnected_in_s')} s (floor "
                         f"{floor.get('reconnected_in_s')} s, which cannot resume: it stores "
                         "nothing).")
    if "ramp" in results:
        product, floor = results["ramp"]["product"], results["ramp"]["floor"]
        notes.append(f"ramp: highest rate held at p99 ≤ 100 ms on one process: product "
                     f"{product['highest_rate_held']:g} msg/s, floor "
                     f"{floor['highest_rate_held']:g} msg/s "
                     f"({ratio(product['highest_rate_held'], floor['highest_rate_held'])}).")
    if "scale-out" in results and "product" in results["scale-out"]:
        two = results["scale-out"]["product"]["highest_rate_held"]
        one = results.get("ramp", {}).get("product", {}).get("highest_rate_held")
        notes.append(f"scale-out: two processes with Redis held {two:g} msg/s at p99 ≤ 100 ms "
                     f"(one process: {one} msg/s).")
    for name in ("typing", "team-typing"):
        if name not in results:
            continue
        run = results[name]["product"]
        quiet, typed = run["without_typing"], run["with_typing"]
        notes.append(
            f"{name}: {run['conversations']} conversations, {run['agents']} agents, "
            f"{typed['rate']:g} msg/s; visitor p50 / p99 {_latency(quiet)} ms without "
            f"typing, {_latency(typed)} ms with {typed['typing_signals_per_s']:g} visitor and "
            f"{typed.get('agent_typing_signals_per_s', 0):g} agent typing signals/s; "
            f"agent {_latency(quiet, 'agent')} vs {_latency(typed, 'agent')} ms; "
            f"server CPU {_cpu(quiet)} vs {_cpu(typed)}.")
    if "idle" in results:
        product, floor = results["idle"]["product"], results["idle"]["floor"]
        notes.append(
            f"idle: {product['streams']} open streams cost {product['kib_per_stream']} KiB "
            f"each (floor {floor['kib_per_stream']} KiB, "
            f"{ratio(product['kib_per_stream'], floor['kib_per_stream'])}); "
            f"{product['queries_per_s']} database transactions/s and "
            f"{product['cpu'].get('server')} % of a core while idle; "
            f"GC pauses while idle: {idle_pauses(product.get('gc_pauses_idle'))}; longest "
            f"since start-up (opening the streams included) {product['gc_pause_max_ms']} ms.")
    client = max((r.get("cpu", {}).get("bench_client", 0.0)
                  for pair in results.values() if isinstance(pair, dict)
                  for r in pair.values() if isinstance(r, dict)), default=0.0)
    if client > 90:
        notes.append(f"WARNING: the load client reached {client:g} % of a core; figures at "
                     "that point measure the client as much as the server.")
    return "\n".join(rows + [""] + [f"- {note}" for note in notes]) + "\n"


def plot(results: dict[str, Any], samples: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install 'chat[bench]')")
        return
    for name, sides in samples.items():
        if not any(sides.values()):
            continue
        figure, axis = plt.subplots(figsize=(8, 4))
        for side, points in sides.items():
            if points:
                for q, style in ((0.5, ":"), (0.99, "-")):
                    xs, ys = _per_second(points, q)
                    axis.plot(xs, ys, style, label=f"{side} p{round(q * 100)}")
        axis.set(title=f"{name}: visitor latency over time", xlabel="second of the run",
                 ylabel="ms", yscale="log")
        _milliseconds(axis.yaxis, ticker)
        axis.legend()
        figure.savefig(out / f"{name}-latency.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
    figure, axis = plt.subplots(figsize=(8, 4))
    for name, side in (("ramp", "product"), ("ramp", "floor"), ("scale-out", "product")):
        steps = results.get(name, {}).get(side, {}).get("steps")
        if steps:
            label = f"{side} ({'2 processes' if name == 'scale-out' else '1 process'})"
            axis.plot([s["rate"] for s in steps], [s["visitor"]["p99"] for s in steps],
                      "o-", label=label)
    axis.axhline(100, color="grey", linestyle="--", linewidth=1, label="bound: 100 ms")
    axis.set(title="ramp: visitor p99 against offered rate", xlabel="messages/s",
             ylabel="p99 ms", yscale="log")
    _milliseconds(axis.yaxis, ticker)
    axis.legend()
    figure.savefig(out / "ramp-p99.png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def _milliseconds(axis: Any, ticker: Any) -> None:
    """A log axis labelled 1, 2, 5, 10, 20, 50, ... in plain numbers."""
    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _per_second(points: list[tuple[float, float]], q: float) -> tuple[list[int], list[float]]:
    buckets: dict[int, list[float]] = {}
    for at, latency in points:
        buckets.setdefault(int(at), []).append(latency * 1000)
    xs = sorted(buckets)
    ys = []
    for second in xs:
        values = sorted(buckets[second])
        ys.append(values[min(len(values) - 1, int(q * len(values)))])
    return xs, ys
