"""Bearer tokens (visitor tokens, session cookies): random, stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """What the database keeps: a token is 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(token.encode()).digest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison, for secrets such as CSRF tokens."""
    return secrets.compare_digest(a.encode(), b.encode())
