"""Caps on the streams one client holds open, so that nobody can take a process's
connections and memory by opening stream after stream.

Counted per process: a stream is one connection to one process, which is what it costs.
Behind several processes the caps hold per process (see ``STREAMS_PER_CLIENT``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from chat.errors import RateLimited

RETRY_SECONDS = 5


class StreamSlots:
    def __init__(self, per_client: int = 10, per_address: int = 200) -> None:
        self.per_client = per_client
        self.per_address = per_address
        self._open: Counter[str] = Counter()

    def take(self, client: str, address: str) -> Callable[[], None]:
        """Hold a slot for ``client`` (a visitor token or a session) from ``address``;
        :class:`RateLimited` when either is at its cap. Returns the release, which is
        safe to call more than once."""
        client, address = "client:" + client, "address:" + address
        if self._open[client] >= self.per_client:
            raise RateLimited(f"This browser has {self.per_client} chat streams open already; "
                              "close some tabs, or try again in a few seconds.", RETRY_SECONDS)
        if self._open[address] >= self.per_address:
            raise RateLimited(f"Your network has {self.per_address} chat streams open "
                              "already; try again in a few seconds.", RETRY_SECONDS)
        self._open[client] += 1
        self._open[address] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                for key in (client, address):
                    self._open[key] -= 1
                    if not self._open[key]:
                        del self._open[key]

        return release
