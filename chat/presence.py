"""Presence: short-lived facts that expire by themselves, shared by every process.

Who is typing or viewing a conversation, which agents have a dashboard open, which
visitors have the widget open: each is an entry that lives for a TTL unless refreshed,
read when a stream (re)connects so that it shows what is true now instead of waiting for the
next refresh (README, "Typing and viewing"). An entry is never history: losing one costs at
most a refresh interval, so a storage failure is logged and otherwise ignored.

In the single embedded process entries live in memory; with ``REDIS_URL`` they live in one
Redis hash per scope whose values carry their own expiry (Redis 7.0 has no per-field TTL),
and the hash itself expires after its longest-lived entry, so nothing outlives its use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

Entries = dict[str, bytes]
SWEEP_INTERVAL = 60.0  # how often the memory store forgets scopes nobody reads


class PresenceStore(Protocol):
    async def put(self, scope: str, key: str, value: bytes, ttl: float) -> None:
        """Set ``key`` in ``scope`` for ``ttl`` seconds (again: refresh it)."""
        ...

    async def drop(self, scope: str, key: str) -> None: ...

    async def read(self, scopes: Sequence[str]) -> list[Entries]:
        """The live entries of each scope, in order (empty where it cannot be read)."""
        ...

    async def close(self) -> None: ...


class MemoryPresence:
    """The store of one process."""

    def __init__(self) -> None:
        self._scopes: dict[str, dict[str, tuple[float, bytes]]] = {}
        self._swept = time.monotonic()

    async def put(self, scope: str, key: str, value: bytes, ttl: float) -> None:
        now = time.monotonic()
        self._scopes.setdefault(scope, {})[key] = (now + ttl, value)
        if now - self._swept > SWEEP_INTERVAL:
            self._swept = now
            for name in list(self._scopes):
                self._live(name, now)

    async def drop(self, scope: str, key: str) -> None:
        entries = self._scopes.get(scope)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del self._scopes[scope]

    async def read(self, scopes: Sequence[str]) -> list[Entries]:
        now = time.monotonic()
        return [self._live(scope, now) for scope in scopes]

    def _live(self, scope: str, now: float) -> Entries:
        entries = self._scopes.get(scope, {})
        for key in [key for key, (expires, _) in entries.items() if expires <= now]:
            del entries[key]
        if not entries:
            self._scopes.pop(scope, None)
        return {key: value for key, (_, value) in entries.items()}

    async def close(self) -> None:
        self._scopes.clear()


class RedisPresence:
    """The store shared through Redis: ``{prefix}{scope}`` hashes of ``expiry|value``."""

    def __init__(self, url: str, *, prefix: str = "chat:presence:") -> None:
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=1.0,
                                              socket_timeout=1.0)
        self._failing = False

    async def put(self, scope: str, key: str, value: bytes, ttl: float) -> None:
        name = self.prefix + scope
        seconds = max(1, int(ttl + 1))
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(name, key, b"%.3f|%s" % (time.time() + ttl, value))
            # The hash lives as long as its longest-lived entry: NX sets a first expiry,
            # GT only ever lengthens it.
            pipe.expire(name, seconds, nx=True)
            pipe.expire(name, seconds, gt=True)
            await self._run(pipe, "put")

    async def drop(self, scope: str, key: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(self.prefix + scope, key)
            await self._run(pipe, "drop")

    async def read(self, scopes: Sequence[str]) -> list[Entries]:
        if not scopes:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.hgetall(self.prefix + scope)
            replies = await self._run(pipe, "read")
        if replies is None:
            return [{} for _ in scopes]
        now = time.time()
        found = []
        for scope, reply in zip(scopes, replies, strict=True):
            live, stale = _split(reply, now)
            if stale:
                await self._forget(scope, stale)
            found.append(live)
        return found

    async def _forget(self, scope: str, keys: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(self.prefix + scope, *keys)
            await self._run(pipe, "forget")

    async def _run(self, pipe: aioredis.client.Pipeline, what: str) -> list[Any] | None:
        try:
            replies: list[Any] = await pipe.execute()
        except (RedisError, OSError) as exc:
            if not self._failing:  # once per outage, not once per keystroke
                logger.warning("Presence %s failed (%s); typing and presence show what "
                               "each process hears until Redis answers again", what, exc)
            self._failing = True
            return None
        if self._failing:
            logger.info("Presence storage answers again")
        self._failing = False
        return replies

    async def close(self) -> None:
        await self._redis.aclose()


def _split(reply: dict[bytes, bytes], now: float) -> tuple[Entries, list[str]]:
    """A hash's entries that are still live, and the keys of those that expired."""
    live, stale = {}, []
    for raw_key, raw in reply.items():
        key = raw_key.decode()
        expires, _, value = raw.partition(b"|")
        if float(expires) > now:
            live[key] = value
        else:
            stale.append(key)
    return live, stale


def create_presence(redis_url: str | None, namespace: str) -> PresenceStore:
    """Shared through Redis when there is one, else this process's own."""
    if redis_url:
        return RedisPresence(redis_url, prefix=f"{namespace}:presence:")
    return MemoryPresence()
