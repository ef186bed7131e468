"""Sites: the websites that embed the widget, their origins and their widget settings."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from chat.errors import Invalid
from chat.models import Row

FieldRule = Literal["off", "optional", "required"]
FIELD_RULES: tuple[FieldRule, ...] = ("off", "optional", "required")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# A DNS name (letters, digits, hyphens; underscores too, as some internal hosts use them).
HOST = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
INK = "#111827"  # the text colour on light brand colours


def luminance(color: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(int(color[i:i + 2], 16)) for i in (1, 3, 5))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


@dataclass(frozen=True, slots=True)
class SiteSettings:
    """How the widget looks and what it asks; stored as JSON in ``sites.settings``."""

    color: str = "#2563eb"
    greeting: str = "Hi there!"
    welcome: str = "Ask us anything. We usually answer within a few minutes."
    prechat_name: FieldRule = "optional"
    prechat_email: FieldRule = "optional"
    # Until presence exists, whether the team is away: the widget then says so and asks
    # for an email, so that someone can follow up.
    offline: bool = False
    offline_message: str = "We're away right now. Leave a message and your email, " \
                           "and we'll get back to you."

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SiteSettings:
        """Stored settings over the defaults; unknown keys are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__slots__}
        return cls.clean(**known)

    @classmethod
    def clean(cls, **values: Any) -> SiteSettings:
        """Validated settings; :class:`Invalid` names the field at fault."""
        defaults = cls()
        merged = {name: values.get(name, getattr(defaults, name)) for name in cls.__slots__}
        if not isinstance(merged["color"], str) or not COLOR.match(merged["color"]):
            raise Invalid("The colour must look like #2563eb.", "color")
        for name in ("greeting", "welcome", "offline_message"):
            text = merged[name]
            if not isinstance(text, str) or len(text) > 500:
                raise Invalid("Keep it to 500 characters of text.", name)
        for name in ("prechat_name", "prechat_email"):
            if merged[name] not in FIELD_RULES:
                raise Invalid(f"Choose one of {', '.join(FIELD_RULES)}.", name)
        merged["offline"] = merged["offline"] is True  # callers pass a bool (Fields.flag)
        return cls(**merged)

    @property
    def ink(self) -> str:
        """White or near-black, whichever reads better on the brand colour (WCAG contrast)."""
        brand = luminance(self.color)
        on_white = 1.05 / (brand + 0.05)
        on_black = (brand + 0.05) / (luminance(INK) + 0.05)
        return "#ffffff" if on_white >= on_black else INK

    @property
    def email_rule(self) -> FieldRule:
        """Offline, an email is how the team answers, so it is required."""
        return "required" if self.offline else self.prechat_email

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Site:
    id: int
    public_key: str
    name: str
    allowed_origins: tuple[str, ...]
    enabled: bool
    settings: SiteSettings = field(default_factory=SiteSettings)
    identity_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: Row) -> Site:
        return cls(
            id=row["id"], public_key=row["public_key"], name=row["name"],
            allowed_origins=tuple(row["allowed_origins"]), enabled=row["enabled"],
            settings=SiteSettings.from_json(row["settings"] or {}),
            identity_secret=row["identity_secret"],
        )

    def verifies(self, email: str, signature: str) -> bool:
        """Whether ``signature`` is the site's proof of ``email`` (see :func:`identity_hash`)."""
        if not self.identity_secret:
            return False
        expected = identity_hash(self.identity_secret, email).encode()
        # As bytes: compare_digest refuses str with non-ASCII characters, which anyone can send.
        return hmac.compare_digest(expected, signature.strip().lower().encode())

    def allows(self, origin: str) -> bool:
        """Whether a page on ``origin`` may embed the widget. No origins listed: any may."""
        return not self.allowed_origins or origin in self.allowed_origins

    @property
    def frame_ancestors(self) -> str:
        """The ``frame-ancestors`` source list for the widget page."""
        return " ".join(self.allowed_origins) if self.allowed_origins else "*"


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` of a URL or origin; :class:`Invalid` when it has none.

    Hosts come out as browsers send them in ``Origin``: lowercase, IDNs in punycode, IPv6
    in brackets, the scheme's default port left out.
    """
    origin = _origin(value.strip())
    if origin is None:
        raise Invalid(f"{value[:200]!r} is not an origin such as https://www.example.com.",
                      "origin")
    return origin


def _origin(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port that is not a number in range
        host = _host(parts.hostname or "")
    except ValueError:  # also a malformed IPv6 address
        return None
    if parts.scheme not in ("http", "https") or host is None:
        return None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def _host(name: str) -> str | None:
    """The host as it appears in an origin, or None when it is not a valid host name."""
    if ":" in name:
        return f"[{ipaddress.IPv6Address(name).compressed}]"  # ValueError if malformed
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    return ascii_name if HOST.fullmatch(ascii_name) else None


def identity_hash(secret: str, email: str) -> str:
    """What a site's server passes to ``ChatWidget.identify`` as ``hash``: the hex
    HMAC-SHA256 of the lowercased email, keyed with the site's identity secret."""
    message = email.strip().lower().encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# Stands in for window.ChatWidget until the async loader runs, so a page may call it right
# after the snippet; the loader replays the queued calls (as Intercom's and Crisp's do).
QUEUE_STUB = ('<script>window.ChatWidget=window.ChatWidget||{q:[]};'
              '["open","close","toggle","identify"].forEach(function(m){var w=window.ChatWidget;'
              "w[m]=w[m]||function(){w.q.push([m,arguments])}})</script>")


def embed_snippet(base_url: str, public_key: str) -> str:
    return (f'{QUEUE_STUB}<script src="{base_url.rstrip("/")}/widget.js" '
            f'data-site="{public_key}" async></script>')
