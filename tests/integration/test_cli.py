"""The `chat` command as users run it: real subprocesses, real databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from chat import db
from tests.support import AppProcess, run_async, wait_for


def chat(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chat", *args], env=env, input=stdin, capture_output=True,
        text=True, timeout=120,
    )


def bare_env(tmp_path: Path) -> dict[str, str]:
    """A first-run environment: no DATABASE_URL, no REDIS_URL, no SECRET_KEY."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env["CHAT_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_serve_on_the_embedded_default_answers_healthz(tmp_path: Path) -> None:
    app = AppProcess(bare_env(tmp_path), tmp_path / "app.log")
    try:
        app.start(timeout=120)
        response = httpx.get(app.url + "/healthz", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
        assert "SECRET_KEY is not set" in app.output()
        app.stop()
        assert app.process is not None and app.process.returncode == 0
        assert "Embedded PostgreSQL stopped" in app.output()
        # The next start reuses the same data directory and key.
        app.start(timeout=120)
        assert httpx.get(app.url + "/healthz", timeout=5).status_code == 200
    finally:
        app.kill()


def test_several_workers_without_redis_are_refused_with_the_reason(tmp_path: Path) -> None:
    result = chat("serve", "--workers", "2", env=bare_env(tmp_path))
    assert result.returncode == 1
    assert "--workers 2 needs REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_workers_share_one_database_and_redis(
    app_env: dict[str, str], database: str, redis_url: str, start_app: object
) -> None:
    app = start_app(dict(app_env, REDIS_URL=redis_url), workers=2)  # type: ignore[operator]
    assert app.process is not None
    workers = psutil.Process(app.process.pid).children(recursive=True)
    servers = {p.pid for p in workers if "spawn_main" in " ".join(p.cmdline())}
    assert len(servers) == 2, [p.cmdline() for p in workers]
    for _ in range(10):
        assert httpx.get(app.url + "/healthz", timeout=5).json()["broker"] == "ok"

    async def pool_owners() -> set[int]:
        async with db.connect(database) as conn:
            names = await conn.fetch("SELECT application_name FROM pg_stat_activity "
                                     "WHERE datname = current_database()")
        return {int(r["application_name"][5:]) for r in names
                if r["application_name"].startswith("chat-")}

    # Both workers connect as they start; the second may still be starting.
    wait_for(lambda: run_async(pool_owners()) == servers, 20, "both workers' connections")


def test_an_unreachable_database_is_named_with_the_fix(tmp_path: Path) -> None:
    env = bare_env(tmp_path)
    env["DATABASE_URL"] = "postgresql://chat:hunter2pw@127.0.0.1:1/chat"
    result = chat("migrate", env=env)
    assert result.returncode == 1
    assert "Cannot connect to PostgreSQL at postgresql://chat:***@127.0.0.1:1/chat" in result.stderr
    assert "Check DATABASE_URL" in result.stderr
    assert "hunter2pw" not in result.stderr


def test_migrate_reports_what_it_applied_then_that_nothing_is_pending(
    make_database: object, tmp_path: Path,
) -> None:
    env = bare_env(tmp_path)
    env["DATABASE_URL"] = make_database()  # type: ignore[operator]
    first = chat("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_init" in first.stdout
    again = chat("migrate", env=env)
    assert again.stdout.strip() == "The database is up to date."


def test_create_agent_reads_the_password_from_stdin_and_refuses_a_duplicate(
    app_env: dict[str, str], database: str,
) -> None:
    created = chat("create-agent", "Alex@Example.com", "--name", "Alex", "--admin",
                   env=app_env, stdin="correct horse battery\n")
    assert created.returncode == 0, created.stderr
    assert "Created admin Alex <Alex@Example.com>" in created.stdout

    duplicate = chat("create-agent", "alex@example.com", "--name", "Other",
                     env=app_env, stdin="another password\n")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr

    short = chat("create-agent", "b@example.com", "--name", "B", env=app_env, stdin="short\n")
    assert short.returncode == 1
    assert "at least 8 characters" in short.stderr

    async def stored() -> list[tuple[str, str, bool]]:
        async with db.connect(database) as conn:
            rows = await conn.fetch("SELECT email, role, password_hash LIKE '$argon2id$%' AS ok "
                                    "FROM agents")
        return [(r["email"], r["role"], r["ok"]) for r in rows]

    assert run_async(stored()) == [("Alex@Example.com", "admin", True)]


def test_site_add_and_list_print_keys_origins_and_the_embed_snippet(
    app_env: dict[str, str], database: str,
) -> None:
    env = dict(app_env, PUBLIC_URL="https://chat.example.com")
    added = chat("site", "add", "Shop", "--origin", "https://shop.example.com/any/path",
                 "--origin", "http://localhost:8080", env=env)
    assert added.returncode == 0, added.stderr
    assert "allowed origins: https://shop.example.com, http://localhost:8080" in added.stdout
    key = added.stdout.split("public key:")[1].split()[0]
    snippet = (f'<script src="https://chat.example.com/widget.js" data-site="{key}" '
               "async></script>")
    assert snippet in added.stdout
    listed = chat("site", "list", env=env)
    assert key in listed.stdout and snippet in listed.stdout
    assert "identity check:  off" in listed.stdout
    bad = chat("site", "add", "Bad", "--origin", "not an origin", env=env)
    assert bad.returncode == 1
    assert "is not an origin such as https://www.example.com" in bad.stderr
