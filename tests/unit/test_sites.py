"""Site settings and origins are validated before anything is stored."""

from __future__ import annotations

import pytest

from chat.errors import Invalid
from chat.sites import (
    QUEUE_STUB,
    Site,
    SiteSettings,
    embed_snippet,
    identity_hash,
    normalize_origin,
)


@pytest.mark.parametrize(("value", "origin"), [
    ("https://www.example.com/shop?x=1", "https://www.example.com"),
    ("http://localhost:8080/", "http://localhost:8080"),
    ("https://example.com:443", "https://example.com"),
    ("HTTP://Example.COM", "http://example.com"),
    ("http://[::1]:8080/x", "http://[::1]:8080"),
    ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
])
def test_origins_are_normalised(value: str, origin: str) -> None:
    assert normalize_origin(value) == origin


@pytest.mark.parametrize(
    "value", ["example.com", "ftp://example.com", "https://", "", "javascript:alert(1)",
              "http://example.com:99999", "http://example.com:port", "http://[::1",
              "http://[not::an::address]", "http://exa mple.com", "http://exa\x00mple.com",
              "https://-leading-hyphen.example", "http://a..b"])
def test_anything_else_is_not_an_origin(value: str) -> None:
    with pytest.raises(Invalid, match="is not an origin"):
        normalize_origin(value)


def test_settings_fall_back_to_defaults_and_refuse_bad_values() -> None:
    assert SiteSettings.from_json({"color": "#ff6600", "unknown": 1}).color == "#ff6600"
    assert SiteSettings.from_json({}).prechat_email == "optional"
    with pytest.raises(Invalid) as bad_colour:
        SiteSettings.clean(color="orange")
    assert bad_colour.value.field == "color"
    with pytest.raises(Invalid) as bad_rule:
        SiteSettings.clean(prechat_name="sometimes")
    assert bad_rule.value.field == "prechat_name"
    with pytest.raises(Invalid):
        SiteSettings.clean(greeting="x" * 501)


def test_away_mode_requires_an_email() -> None:
    assert SiteSettings.clean(prechat_email="off").email_rule == "off"
    assert SiteSettings.clean(prechat_email="off", offline=True).email_rule == "required"


def test_a_site_with_no_origins_may_be_embedded_anywhere_else_only_on_its_own() -> None:
    anywhere = Site(1, "pk_x", "A", (), True)
    assert anywhere.allows("https://evil.example") and anywhere.frame_ancestors == "*"
    own = Site(2, "pk_y", "B", ("https://shop.example", "http://localhost:8080"), True)
    assert own.allows("https://shop.example") and not own.allows("https://evil.example")
    assert own.frame_ancestors == "https://shop.example http://localhost:8080"


def test_the_embed_snippet_is_the_queue_stub_then_one_async_script_tag() -> None:
    assert embed_snippet("https://chat.example.com/", "pk_abc") == QUEUE_STUB + (
        '<script src="https://chat.example.com/widget.js" data-site="pk_abc" async></script>')


def test_the_identity_hash_is_the_hex_hmac_sha256_of_the_lowercased_email() -> None:
    # As any integrator's server computes it, e.g.
    # printf %s maria@example.com | openssl dgst -sha256 -hmac is_secret
    expected = "cf3479a5eb00a7df4f09dbcf9fdad6624eac48c58d21f3579cd895ceb629d038"
    assert identity_hash("is_secret", " Maria@Example.com ") == expected
    site = Site(1, "pk_x", "Acme", (), True, identity_secret="is_secret")
    assert site.verifies("maria@example.com", expected.upper())
    assert not site.verifies("mario@example.com", expected)
    assert not site.verifies("maria@example.com", "é" * 64)  # not an error either
    assert not Site(1, "pk_x", "Acme", (), True).verifies("maria@example.com", expected)


@pytest.mark.parametrize(("color", "ink"), [
    ("#2563eb", "#ffffff"), ("#111827", "#ffffff"), ("#facc15", "#111827"), ("#ffffff", "#111827"),
])
def test_text_on_the_brand_colour_is_white_or_ink_whichever_reads_better(
    color: str, ink: str,
) -> None:
    assert SiteSettings.clean(color=color).ink == ink
