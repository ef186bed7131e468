"""Headers every response carries, the policy that decides who may frame and script our
pages, and whether a request came from one of them (see SECURITY.md).

A response that sets its own ``Content-Security-Policy`` (the widget's frame, which the
site's origins may embed) keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from chat.sites import normalize_origin


def content_security_policy(frame_ancestors: str, htmx_url: str) -> str:
    """Our pages run only our scripts and htmx (pinned by integrity, from ``HTMX_URL``)."""
    htmx_origin = normalize_origin(htmx_url) if htmx_url.startswith("http") else ""
    return (
        f"default-src 'self'; script-src 'self' {htmx_origin}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        f"frame-ancestors {frame_ancestors}; base-uri 'none'; form-action 'self'; "
        "object-src 'none'"
    )


class SecurityHeaders:
    """What every response carries: ``nosniff``, a same-origin ``Referrer-Policy`` and,
    unless the response has its own, a CSP that forbids framing (clickjacking). Added by
    :class:`chat.web.http.Edge`, the layer every response passes through."""

    def __init__(self, htmx_url: str) -> None:
        self.policy = content_security_policy("'none'", htmx_url).encode()
        self.always = [(b"x-content-type-options", b"nosniff"),
                       (b"referrer-policy", b"same-origin")]

    def added_to(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        found = [*headers, *self.always]
        if not any(name == b"content-security-policy" for name, _ in found):
            found.append((b"content-security-policy", self.policy))
        return found


def from_this_site(headers: Headers, public_url: str | None) -> bool:
    """Whether a browser request came from one of our own pages.

    ``Sec-Fetch-Site`` (every current browser sends it) says so directly. Otherwise the
    ``Origin`` must be ``PUBLIC_URL``'s, or have the host the request was sent to. A
    request with neither header is not from a browser, so it cannot be a forged one.
    """
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return True
    if public_url is not None:
        return origin == normalize_origin(public_url)
    try:
        return urlsplit(origin).netloc == headers.get("host")
    except ValueError:  # not even a URL, such as "http://[::1"
        return False
