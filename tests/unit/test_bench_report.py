"""The capacity report's text says what was run, whatever the size of the run."""

from __future__ import annotations

from typing import Any

from chat.bench.report import markdown


def side(**extra: Any) -> dict[str, Any]:
    figures = {"p50": 1.0, "p90": 2.0, "p99": 4.0, "max": 8.0}
    return {"rate": 40, "achieved": 40.0, "visitor": figures, "agent": figures, "lost": 0,
            "duplicated": 0, "cpu": {"server": 10.0, "bench_client": 5.0},
            "server_rss_mb": 60.0, **extra}


def test_a_quick_run_reports_the_streams_and_agents_it_ran_not_the_full_shapes() -> None:
    results = {
        "machine": "test machine",
        "team": {"product": side(agents=5, highest_rate_held=40),
                 "floor": side(agents=5, highest_rate_held=60)},
        "storm": {"product": side(streams=500, reconnected_in_s=0.2),
                  "floor": side(streams=500, reconnected_in_s=0.1)},
    }
    report = markdown(results)
    assert "a 5-agent team" in report
    assert "storm: 500 streams dropped at once" in report
