"""Browser tests: the system Chromium driven by Playwright, with no internet.

htmx comes from the npm registry (``npm pack``), checked against the integrity hashes the
pages pin, and is served to the browser in place of the CDN. The widget is embedded in a
host page served from a different origin than the app.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chat import db
from chat.config import HTMX_FILES, HTMX_VERSION
from chat.queries import sites
from tests.support import ROOT, AppProcess, free_port, run_async, unavailable

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def screenshot_dir() -> Path:
    """Where a screenshot test writes: test-artifacts/ to look at, or docs/screenshots/ with
    UPDATE_SCREENSHOTS=1 (the README's pictures)."""
    target = ROOT / ("docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS")
                     else "test-artifacts")
    target.mkdir(parents=True, exist_ok=True)
    return target


AXE_VERSION = "4.14.1"  # axe-core, the accessibility checker the tests run in pages


def npm_package(name: str, version: str) -> Path:
    """The unpacked package from the npm registry, cached in .cache/ between runs."""
    package = ROOT / ".cache" / f"{name}-{version}" / "package"
    if not (package / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            unavailable(f"npm is needed to fetch {name} from the npm registry")
        with tempfile.TemporaryDirectory() as tmp:
            packed = subprocess.run([str(npm), "pack", f"{name}@{version}", "--silent"],
                                    cwd=tmp, capture_output=True, text=True, timeout=120)
            if packed.returncode != 0:
                unavailable(f"npm pack {name}@{version} failed: {packed.stderr}")
            with tarfile.open(Path(tmp) / packed.stdout.strip().splitlines()[-1]) as tar:
                tar.extractall(package.parent, filter="data")
    return package


@pytest.fixture(scope="session")
def htmx_dist() -> Path:
    """htmx's dist/ from the npm package, verified against the pages' integrity hashes."""
    dist = npm_package("htmx.org", HTMX_VERSION) / "dist"
    for name, integrity in HTMX_FILES.items():
        digest = hashlib.sha384((dist / name).read_bytes()).digest()
        assert "sha384-" + base64.b64encode(digest).decode() == integrity, name
    return dist


@pytest.fixture(scope="session")
def axe_source() -> str:
    return (npm_package("axe-core", AXE_VERSION) / "axe.min.js").read_text()


@pytest.fixture
def browser(htmx_dist: Path) -> Iterator[object]:
    # One per test: Playwright's sync API keeps its event loop running while it is open,
    # which the async tests of other modules could not share.
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM} (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser: object, htmx_dist: Path) -> Iterator[Callable[..., object]]:
    """Browser contexts (separate people) that load htmx from the npm package, not a CDN."""
    contexts = []

    def serve_htmx(route: object) -> None:
        name = route.request.url.split("/dist/", 1)[1]  # type: ignore[attr-defined]
        route.fulfill(path=str(htmx_dist / name), content_type="text/javascript",  # type: ignore[attr-defined]
                      headers={"Access-Control-Allow-Origin": "*"})

    def make(**options: object) -> object:
        options.setdefault("viewport", {"width": 1200, "height": 800})
        context = browser.new_context(**options)  # type: ignore[attr-defined]
        context.route(f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/**", serve_htmx)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@dataclass
class HostSite:
    """A website of a customer's, on its own origin, with the widget embedded."""

    url: str
    origin: str
    directory: Path


@pytest.fixture
def host_site(tmp_path: Path) -> Iterator[HostSite]:
    directory = tmp_path / "host"
    directory.mkdir()
    port = free_port()
    handler = partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://localhost:{port}"  # another host and port than the app's 127.0.0.1
    yield HostSite(origin + "/", origin, directory)
    server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:Georgia,serif;background:#fdf6e3;margin:0;padding:40px}}
h1{{color:#b58900}} button{{background:red;font-size:30px}} iframe{{border:5px solid red}}</style>
</head><body><h1>{title}</h1><p>Handmade goods, shipped worldwide.</p>
<a href="/other.html">Another page</a>
<script src="{app}/widget.js" data-site="{key}" async></script>
</body></html>
"""


@dataclass
class Widget:
    """The app and a host site that embeds its widget."""

    app: AppProcess
    host: HostSite
    site_key: str


@pytest.fixture
def embed(host_site: HostSite, database: str, seed: object) -> Callable[[AppProcess], Widget]:
    """Allow the host site's origin on a site and write its pages for ``app``."""

    def make(app: AppProcess) -> Widget:
        async def add_site() -> str:
            async with db.connect(database) as conn:
                row = await sites.insert(conn, public_key="pk_e2e_widget_site", name="Acme Store",
                                         allowed_origins=[host_site.origin])
            return str(row["public_key"])

        existing = run_async(_site_key(database))
        key = existing or run_async(add_site())
        for name, title in (("index.html", "Acme Store"), ("other.html", "Acme Store: about")):
            (host_site.directory / name).write_text(
                HOST_PAGE.format(title=title, app=app.url, key=key))
        return Widget(app, host_site, key)

    return make


async def _site_key(database: str) -> str | None:
    async with db.connect(database) as conn:
        key: str | None = await conn.fetchval(
            "SELECT public_key FROM sites WHERE public_key = 'pk_e2e_widget_site'")
    return key
