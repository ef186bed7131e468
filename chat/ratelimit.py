"""Rate limits, with the ``limits`` library: shared through Redis when there is one.

With ``REDIS_URL`` set every process counts in Redis, so a limit holds across workers and
hosts; without it, the one process counts in memory. While Redis is unreachable each
process counts in its own memory instead (limits then hold per process, and requests keep
being served), and it tries Redis again every few seconds: a storage error never becomes
a 500 and never lets every request through unchecked.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from chat.errors import RateLimited

logger = logging.getLogger(__name__)

T = TypeVar("T")
# How long to count in memory after Redis failed, before trying it again.
REDIS_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Limit:
    rule: RateLimitItem
    message: str


# Generous for people, tight for scripts that open conversation after conversation.
CONVERSATIONS_PER_IP = Limit(parse("20/10 minutes"),
                             "Too many new conversations from your network.")
CONVERSATIONS_PER_VISITOR = Limit(parse("5/10 minutes"), "You started several conversations "
                                  "just now; please continue in the current one.")
# A person types a burst of short messages now and then; a script sends hundreds.
MESSAGES_PER_CONVERSATION = Limit(parse("10/10 seconds"),
                                  "You're sending messages very fast.")
MESSAGES_PER_VISITOR = Limit(parse("60/minute"), "You're sending a lot of messages.")
MESSAGES_PER_IP = Limit(parse("300/minute"), "Too many messages from your network.")
# A page sends a typing signal at most every two seconds (see chat.signals).
SIGNALS_PER_VISITOR = Limit(parse("60/minute"), "Slow down a little.")
# Failed sign-ins per address and email: slows password guessing to a crawl; per address
# alone: a client that changes the email each time is limited too.
SIGN_INS = Limit(parse("10/15 minutes"), "Too many failed sign-ins.")
SIGN_INS_PER_ADDRESS = Limit(parse("30/15 minutes"),
                             "Too many failed sign-ins from your network.")


class RateLimiter:
    def __init__(self, redis_url: str | None, *, enabled: bool = True,
                 namespace: str = "chat") -> None:
        self.enabled = enabled
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared = None if redis_url is None else MovingWindowRateLimiter(RedisStorage(
            f"async+{redis_url}", implementation="redispy", wrap_exceptions=True,
            key_prefix=f"{namespace}:limits", socket_timeout=0.5, socket_connect_timeout=0.5,
        ))
        self._shared_down_since: float | None = None
        self._retry_shared_at = 0.0

    async def hit(self, limit: Limit, *key: str) -> None:
        """Count one request against ``limit`` for ``key``; :class:`RateLimited` when over."""
        if not self.enabled or await self._run(lambda lim: lim.hit(limit.rule, *key)):
            return
        await self._refuse(limit, *key)

    async def check(self, limit: Limit, *key: str) -> None:
        """:class:`RateLimited` if ``key`` used up ``limit``; counts nothing (see :meth:`hit`)."""
        if self.enabled and not await self._run(lambda lim: lim.test(limit.rule, *key)):
            await self._refuse(limit, *key)

    async def _refuse(self, limit: Limit, *key: str) -> None:
        stats = await self._run(lambda lim: lim.get_window_stats(limit.rule, *key))
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(f"{limit.message} Try again in {_duration(retry_after)}.", retry_after)

    async def _run(self, call: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        """``call`` on the Redis counters, or on this process's while Redis is failing."""
        now = time.monotonic()
        if self._shared is None or now < self._retry_shared_at:
            return await call(self._memory)
        try:
            result = await call(self._shared)
        except (StorageError, OSError, TimeoutError) as exc:
            self._retry_shared_at = now + REDIS_RETRY_SECONDS
            if self._shared_down_since is None:
                self._shared_down_since = now
                logger.warning("Rate limits cannot reach Redis (%s); counting in this "
                               "process until it is back", exc)
            return await call(self._memory)
        if self._shared_down_since is not None:
            logger.info("Rate limits reach Redis again after %.0f s",
                        now - self._shared_down_since)
            self._shared_down_since = None
        return result


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"
