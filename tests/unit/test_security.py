"""Which requests count as coming from the chat's own pages (login CSRF, widget writes)."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from chat.web.security import content_security_policy, from_this_site


@pytest.mark.parametrize(("headers", "public_url", "ours"), [
    ({"sec-fetch-site": "same-origin", "origin": "https://evil.example"}, None, True),
    ({"sec-fetch-site": "cross-site"}, None, False),
    ({"sec-fetch-site": "same-site"}, None, False),  # a sibling subdomain is someone else
    ({}, None, True),  # no browser sends neither: a server-to-server call
    ({"origin": "https://chat.example", "host": "chat.example"}, None, True),
    ({"origin": "https://evil.example", "host": "chat.example"}, None, False),
    ({"origin": "https://chat.example"}, "https://chat.example/", True),
    ({"origin": "https://evil.example"}, "https://chat.example", False),
    ({"origin": "http://[::1", "host": "chat.example"}, None, False),
    ({"origin": "null", "host": "chat.example"}, None, False),
])
def test_from_this_site(headers: dict[str, str], public_url: str | None, ours: bool) -> None:
    assert from_this_site(Headers(headers), public_url) is ours


def test_pages_may_load_scripts_only_from_here_and_the_htmx_origin() -> None:
    policy = content_security_policy("'none'", "https://cdn.jsdelivr.net/npm/htmx.org@4/dist")
    assert "script-src 'self' https://cdn.jsdelivr.net;" in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert "script-src 'self' ;" in content_security_policy("*", "/static/htmx")
