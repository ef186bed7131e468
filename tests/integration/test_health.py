"""/healthz tells a load balancer which dependency is down."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support import AppProcess, RedisProcess, wait_for


def test_healthz_answers_503_naming_redis_while_it_is_down_and_recovers(
    app_env: dict[str, str], redis_process: RedisProcess, start_app: Callable[..., AppProcess],
) -> None:
    app = start_app(dict(app_env, REDIS_URL=redis_process.url))
    redis_process.kill()
    down = httpx.get(app.url + "/healthz", timeout=10)
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": "ok", "broker": "down"}
    redis_process.start()
    wait_for(app.healthy, 20, "healthz to recover after Redis restarts")
