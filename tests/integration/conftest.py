"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Seed
from tests.support import AppProcess


@pytest.fixture
def app(seed: Seed, app_env: dict[str, str], start_app: Callable[..., AppProcess]) -> AppProcess:
    """One app process on the seeded database (a site and an admin)."""
    return start_app(app_env)


@pytest.fixture(params=["memory", "redis"])
def two_sides(request: pytest.FixtureRequest, seed: Seed, app_env: dict[str, str],
              start_app: Callable[..., AppProcess]) -> tuple[AppProcess, AppProcess]:
    """Where a test's clients post, and where they stream: the same process in memory mode,
    or two processes joined by Redis, so that what travels must cross between them."""
    if request.param == "memory":
        one = start_app(app_env)
        return one, one
    env = dict(app_env, REDIS_URL=request.getfixturevalue("redis_url"))
    return start_app(env), start_app(env)
