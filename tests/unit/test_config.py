"""Settings are validated at boot with messages that name the variable and the fix."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chat.config import DEFAULT_HTMX_URL, ConfigError, Settings


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), **env})


def test_defaults_are_the_embedded_database_and_in_process_broker(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.embedded_database and s.redis_url is None
    assert s.htmx_url == DEFAULT_HTMX_URL
    assert s.log_level == "INFO"


def test_secret_key_is_generated_once_private_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = settings(tmp_path).secret_key
    assert "SECRET_KEY is not set" in caplog.text
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert settings(tmp_path).secret_key == first
    assert len(first) >= 32
    assert settings(tmp_path, SECRET_KEY="from-env").secret_key == "from-env"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must start with postgres:// or postgresql://"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must start with redis://"),
        ("PUBLIC_URL", "chat.example.com", "PUBLIC_URL must start with http://"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='LOUD' is not one of DEBUG"),
    ],
)
def test_invalid_settings_name_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, **{name: value})


def test_a_truncated_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError, match="delete the file"):
        settings(tmp_path)
