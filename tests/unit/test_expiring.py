"""The short-lived cache in front of hot lookups (CORS sites, typing access)."""

from __future__ import annotations

import asyncio

import pytest

from chat import expiring
from chat.expiring import Expiring


def test_a_value_is_reused_until_it_lapses_and_a_failure_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(expiring.time, "monotonic", lambda: clock[0])
    loads: list[str] = []

    async def load(value: str | None) -> str | None:
        loads.append(str(value))
        if value == "boom":
            raise LookupError(value)
        return value

    async def scenario() -> None:
        kept: Expiring[str, str | None] = Expiring(5.0, limit=2)
        assert await kept.get("a", lambda: load("one")) == "one"
        clock[0] += 4.9
        assert await kept.get("a", lambda: load("two")) == "one"  # still fresh
        clock[0] += 0.1
        assert await kept.get("a", lambda: load("three")) == "three"  # lapsed: loaded again
        assert await kept.get("none", lambda: load(None)) is None  # "nothing" is kept too
        assert await kept.get("none", lambda: load("later")) is None
        with pytest.raises(LookupError):
            await kept.get("b", lambda: load("boom"))
        assert await kept.get("b", lambda: load("ok")) == "ok"  # past the limit: afresh
        assert await kept.get("a", lambda: load("four")) == "four"

    asyncio.run(scenario())
    assert loads == ["one", "three", "None", "boom", "ok", "four"]
