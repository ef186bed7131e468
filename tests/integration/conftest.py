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
