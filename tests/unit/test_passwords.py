"""Argon2 work runs off the event loop, a few hashes at a time, with a bounded queue."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chat import passwords
from chat.errors import RateLimited


async def test_hashing_leaves_the_event_loop_free_for_everything_else() -> None:
    ticks = 0

    async def other_work() -> None:  # stands for every open stream of the process
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_work())
    hashed = await passwords.hash_password("correct horse battery")
    assert await passwords.verify_password(hashed, "correct horse battery")
    ticker.cancel()
    # On the loop, a hash (tens of milliseconds) would let the other task run once or twice.
    assert ticks > 50


async def test_an_unknown_account_is_checked_against_a_dummy_hash_and_never_matches() -> None:
    assert not await passwords.verify_password(None, "anything")
    assert not await passwords.verify_password("not a hash", "anything")


async def test_at_most_a_few_hashes_run_at_once_and_a_flood_is_told_to_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    running, most = 0, 0
    lock = threading.Lock()

    def slow_verify(password_hash: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1
        return False

    monkeypatch.setattr(passwords, "_verify", slow_verify)
    queued = [asyncio.create_task(passwords.verify_password("h", "p"))
              for _ in range(passwords.HASHES_AT_ONCE + passwords.MAX_WAITING)]
    while passwords._limiter().statistics().tasks_waiting < passwords.MAX_WAITING:
        await asyncio.sleep(0.01)
    with pytest.raises(RateLimited, match="try again in a few seconds"):
        await passwords.verify_password("h", "p")
    release.set()
    assert await asyncio.gather(*queued) == [False] * len(queued)
    assert most == passwords.HASHES_AT_ONCE
