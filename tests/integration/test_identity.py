"""Identity verification: the site's server signs a signed-in user's email, agents see who
is verified, and a forged, stale or missing signature verifies nothing."""

from __future__ import annotations

import hashlib
import hmac

import httpx

from tests.conftest import Seed
from tests.integration.test_dashboard_http import HTML, signed_in, sql
from tests.support import AppProcess


def signature(secret: str, email: str) -> str:
    """What an integrator's server computes (written here independently of the app)."""
    return hmac.new(secret.encode(), email.lower().encode(), hashlib.sha256).hexdigest()


def test_only_an_email_signed_with_the_current_secret_shows_as_verified(
    app: AppProcess, seed: Seed, database: str,
) -> None:
    admin, csrf = signed_in(app, seed.email, seed.password)
    identity = f"/settings/sites/{seed.site_id}/identity"

    def start(email: str, identity_hash: str) -> int:
        response = httpx.post(f"{app.url}/widget/{seed.site_key}/conversations", data={
            "body": "Hi, it's me", "email": email, "identity_hash": identity_hash})
        assert response.status_code == 201, response.text  # a bad signature never blocks
        return int(response.json()["conversation"]["id"])

    def verified(conversation: int) -> bool:
        page = admin.get(f"/conversations/{conversation}", headers=HTML)
        return ">Verified</span>" in page.text

    unsigned_before = start("maria@example.com", signature("nothing yet", "maria@example.com"))
    assert admin.post(identity, headers=HTML, data={"csrf_token": csrf, "action": "on"}
                      ).status_code == 303
    secret = str(sql(database, "SELECT identity_secret FROM sites"))
    assert secret.startswith("is_") and secret in admin.get("/settings", headers=HTML).text

    signed = start("Maria@Example.com", signature(secret, "maria@example.com"))
    forged = start("maria@example.com", signature("a guess", "maria@example.com"))
    other_email = start("mario@example.com", signature(secret, "maria@example.com"))
    unsigned = start("maria@example.com", "")
    assert [verified(c) for c in (unsigned_before, signed, forged, other_email, unsigned)] == [
        False, True, False, False, False]

    assert admin.post(identity, data={"csrf_token": csrf, "action": "on"}).json() == {"ok": True}
    rotated = str(sql(database, "SELECT identity_secret FROM sites"))
    assert rotated != secret
    assert not verified(signed)  # proven with a secret that is no longer the site's
    assert not verified(start("maria@example.com", signature(secret, "maria@example.com")))
    signed_again = start("maria@example.com", signature(rotated, "maria@example.com"))
    assert verified(signed_again)

    refused = admin.post(identity, headers=HTML, data={"csrf_token": csrf, "action": "maybe"})
    assert refused.status_code == 422
    assert sql(database, "SELECT identity_secret FROM sites") == rotated
    admin.post(identity, data={"csrf_token": csrf, "action": "off"})
    assert sql(database, "SELECT identity_secret FROM sites") is None
    assert not verified(signed_again)  # verification is off: nobody shows as verified
    assert not verified(start("maria@example.com", signature(rotated, "maria@example.com")))
