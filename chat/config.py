"""Settings, read once from the environment and validated at boot.

Every problem is reported as a :class:`ConfigError` whose message names the variable and
the fix, so that ``chat serve`` can print it and exit instead of failing later with a
traceback from deep inside a driver.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

HTMX_VERSION = "4.0.1"
DEFAULT_HTMX_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist"
# The files pages load from HTMX_URL, with their Subresource Integrity hashes (computed from
# the npm package htmx.org@4.0.1), so a CDN or a mirror cannot change what runs.
HTMX_FILES = {
    "htmx.min.js": "sha384-Qp9rdC8H7EqOoX+nR0P3RPG2Noji+qdwJlGpfzwQJsfOpp3sGwIdSP9xO3+UlEhn",
    "ext/hx-upsert.min.js":
        "sha384-RokoL54Uf58UQMawJe+4j+PvdsTh8FIhlRexOKFKzNSMfDVoMj1ibUt8t9cGkKYd",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32


class ConfigError(Exception):
    """A setting is missing or invalid; the message says which one and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """The process-wide configuration. Build it with :meth:`from_env`."""

    database_url: str | None
    redis_url: str | None
    secret_key: str
    data_dir: Path
    public_url: str | None
    htmx_url: str
    log_level: str
    replay_limit: int = 500
    rate_limits: bool = True
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or networks).
    forwarded_allow_ips: tuple[str, ...] = ()
    stream_send_timeout: int = 30  # seconds a client may take nothing before it is dropped
    repair_interval: int = 20  # seconds between checks for publishes that never arrived
    streams_per_client: int = 10  # open streams per visitor token or agent session
    streams_per_address: int = 200
    # An agent with no dashboard stream open for this long is offline (a reload or a
    # dropped connection in between changes nothing)...
    presence_ttl: int = 30
    # ... and one whose dashboard tabs have all been hidden for this long is away.
    away_after: int = 300
    metrics_token: str | None = None  # None: /metrics is off
    redis_namespace: str | None = None  # None: derived from the installation's id

    @property
    def embedded_database(self) -> bool:
        """True when no ``DATABASE_URL`` is set and the embedded PostgreSQL is used."""
        return self.database_url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise :class:`ConfigError` on the first problem."""
        env = os.environ if environ is None else environ
        data_dir = Path(_get(env, "CHAT_DATA_DIR") or ".chat").expanduser().resolve()
        log_level = (_get(env, "LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL={log_level!r} is not one of {', '.join(LOG_LEVELS)}.")
        return cls(
            database_url=_url(env, "DATABASE_URL", ("postgres", "postgresql")),
            redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
            secret_key=_get(env, "SECRET_KEY") or load_or_create_secret_key(data_dir),
            data_dir=data_dir,
            public_url=_url(env, "PUBLIC_URL", ("http", "https")),
            htmx_url=(_url(env, "HTMX_URL", ("http", "https")) or DEFAULT_HTMX_URL).rstrip("/"),
            log_level=log_level,
            replay_limit=_positive_int(env, "STREAM_REPLAY_LIMIT", 500),
            rate_limits=_switch(env, "RATE_LIMITS", True),
            forwarded_allow_ips=_networks(env, "FORWARDED_ALLOW_IPS"),
            stream_send_timeout=_positive_int(env, "STREAM_SEND_TIMEOUT", 30),
            repair_interval=_positive_int(env, "REPAIR_INTERVAL", 20),
            streams_per_client=_positive_int(env, "STREAMS_PER_CLIENT", 10),
            streams_per_address=_positive_int(env, "STREAMS_PER_ADDRESS", 200),
            presence_ttl=_positive_int(env, "PRESENCE_TTL", 30),
            away_after=_positive_int(env, "AWAY_AFTER", 300),
            metrics_token=_secret(env, "METRICS_TOKEN"),
            redis_namespace=_namespace(env, "REDIS_NAMESPACE"),
        )


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = (_get(env, name) or "").lower()
    if not value:
        return default
    if value not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off; got {value!r}.")
    return value == "on"


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _get(env, name)
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < 1:
        raise ConfigError(f"{name} must be a positive whole number; got {value!r}.")
    return int(value)


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated addresses or networks (``10.0.0.5``, ``10.0.0.0/8``, ``::1``)."""
    items = tuple(item.strip() for item in (_get(env, name) or "").split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"{name}: {item!r} is not an IP address or network; list the addresses of "
                "your reverse proxies, e.g. 10.0.0.5,10.0.1.0/24 (or leave it unset when "
                "clients connect directly)."
            ) from None
    return items


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is not None and len(value) < 16:
        raise ConfigError(f"{name} must be at least 16 characters; generate one with "
                          "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`.")
    return value


def _namespace(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise ConfigError(f"{name} must be 1-64 letters, digits or _.:- (it prefixes every "
                          f"Redis channel and key of this installation); got {value!r}.")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    value = _get(env, name)
    if value is None:
        return None
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        expected = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name} must start with {expected}; got {value!r}.")
    return value


def load_or_create_secret_key(data_dir: Path) -> str:
    """Return the key kept in the data directory, creating it (mode 0600) on first use.

    Several processes may boot at once, so the file is created exclusively and a loser of
    that race reads the winner's key.
    """
    path = data_dir / SECRET_KEY_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"{path} holds a key shorter than {MIN_SECRET_KEY_LENGTH} characters; "
                "delete the file to have a new one generated, or set SECRET_KEY."
            ) from None
        return key
    except OSError as exc:
        raise ConfigError(
            f"Cannot write {path} ({exc.strerror}); set SECRET_KEY, "
            "or point CHAT_DATA_DIR at a writable directory."
        ) from exc
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    logger.warning(
        "SECRET_KEY is not set: generated one in %s. Set SECRET_KEY in production so that "
        "every host shares it.", path,
    )
    return key
