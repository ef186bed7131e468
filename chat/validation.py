"""Checks applied at the edge, before anything is written, each raising :class:`Invalid`."""

from __future__ import annotations

import re

from chat import passwords
from chat.errors import Invalid

# Deliberately loose: one "@", something on both sides, a dot in the domain, no spaces.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100


def email(value: str, field: str = "email") -> str:
    value = value.strip()
    if len(value) > MAX_EMAIL_LENGTH:
        raise Invalid(f"An email address can be at most {MAX_EMAIL_LENGTH} characters.", field)
    if not EMAIL.fullmatch(value):
        raise Invalid(f"{value!r} is not a valid email address.", field)
    return value


def name(value: str, field: str = "name") -> str:
    value = " ".join(value.split())
    if not value:
        raise Invalid("A name is required.", field)
    if len(value) > MAX_NAME_LENGTH:
        raise Invalid(f"A name can be at most {MAX_NAME_LENGTH} characters.", field)
    return value


def password(value: str, field: str = "password") -> str:
    if len(value) < passwords.MIN_LENGTH:
        raise Invalid(f"A password needs at least {passwords.MIN_LENGTH} characters.", field)
    if len(value) > passwords.MAX_LENGTH:
        raise Invalid(f"A password can be at most {passwords.MAX_LENGTH} characters.", field)
    return value
