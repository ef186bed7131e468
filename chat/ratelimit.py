"""Rate limits, with the ``limits`` library: shared through Redis when there is one.

With ``REDIS_URL`` set every process counts in Redis, so a limit holds across workers and
hosts; without it, the one process counts in memory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from chat.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    rule: RateLimitItem
    message: str


# Generous for people, tight for scripts that open conversation after conversation.
CONVERSATIONS_PER_IP = Limit(parse("20/10 minutes"),
                             "Too many new conversations from your network.")
CONVERSATIONS_PER_VISITOR = Limit(parse("5/10 minutes"), "You started several conversations "
                                  "just now; please continue in the current one.")


# Failed sign-ins per address and email: slows password guessing to a crawl.
SIGN_INS = Limit(parse("10/15 minutes"), "Too many failed sign-ins.")


class RateLimiter:
    def __init__(self, redis_url: str | None, *, enabled: bool = True) -> None:
        storage: Storage = (RedisStorage(f"async+{redis_url}", implementation="redispy")
                            if redis_url else MemoryStorage())
        self._limiter = MovingWindowRateLimiter(storage)
        self.enabled = enabled

    async def hit(self, limit: Limit, *key: str) -> None:
        """Count one request against ``limit`` for ``key``; :class:`RateLimited` when over."""
        if not self.enabled or await self._limiter.hit(limit.rule, *key):
            return
        await self._refuse(limit, *key)

    async def check(self, limit: Limit, *key: str) -> None:
        """:class:`RateLimited` if ``key`` used up ``limit``; counts nothing (see :meth:`hit`)."""
        if self.enabled and not await self._limiter.test(limit.rule, *key):
            await self._refuse(limit, *key)

    async def _refuse(self, limit: Limit, *key: str) -> None:
        stats = await self._limiter.get_window_stats(limit.rule, *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(f"{limit.message} Try again in {_duration(retry_after)}.", retry_after)


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"
