"""``chat bench`` as a user runs it: a real server on the test database, and the floor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_a_quick_steady_run_delivers_everything_once_and_states_its_ratio_to_the_floor(
    database: str, app_env: dict[str, str], tmp_path: Path,
) -> None:
    out = tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "chat", "bench", "--scenario", "steady", "--quick",
         "--out", str(out)],
        env={**app_env, "DATABASE_URL": database}, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((out / "results.json").read_text())
    product, floor = results["steady"]["product"], results["steady"]["floor"]
    assert product["owed"] > 0 and product["lost"] == 0 and product["duplicated"] == 0
    assert product["failed_posts"] == 0 and product["agent_rows_stale"] == 0
    assert product["server_lag_p99_ms"] > 0  # read from the server's own histogram
    assert floor["lost"] == 0
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| steady |"))
    ratio = product["visitor"]["p99"] / floor["visitor"]["p99"]
    assert f"{ratio:.2f}x" in row
    assert (out / "steady-latency.png").stat().st_size > 0
