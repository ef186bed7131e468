"""Password hashing with Argon2id (argon2-cffi's recommended parameters: 64 MiB each).

Hashing is deliberately slow and memory-hungry, so it runs in worker threads, a few at a
time: a flood of sign-ins waits its turn instead of stalling the event loop (and with it
every open stream) or taking 64 MiB per request at once. Callers hold no database
connection while they wait.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chat.errors import RateLimited

MIN_LENGTH = 8
MAX_LENGTH = 1024
# Leave at least one core to the event loop: at most half of them hash at once.
HASHES_AT_ONCE = max(1, (os.cpu_count() or 2) // 2)
# Beyond this many waiting, answer "busy" at once rather than queue without end.
MAX_WAITING = 32

T = TypeVar("T")
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary())


async def hash_password(password: str) -> str:
    return await _off_the_loop(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; never raises on a mismatch or a malformed hash.

    Without a hash (an unknown account) it checks against a dummy one and answers False,
    so that a wrong email takes as long as a wrong password.
    """
    matched = await _off_the_loop(_verify, password_hash or _DUMMY_HASH, password)
    return matched and password_hash is not None


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def _off_the_loop(work: Callable[..., T], *args: str) -> T:
    limiter = _limiter()
    if limiter.statistics().tasks_waiting >= MAX_WAITING:
        raise RateLimited("Many people are signing in right now; try again in a few seconds.",
                          retry_after=5)
    result: T = await anyio.to_thread.run_sync(work, *args, limiter=limiter)
    return result


def _limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter (one per process in production; tests run several loops)."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(HASHES_AT_ONCE)
    return limiter
