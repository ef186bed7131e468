"""Every screen passes axe-core's checks (WCAG 2 A/AA and best practices): names, landmarks,
headings, contrast. Run in the real pages, with the state agents and visitors see."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, Frame, Page, expect

from tests.conftest import Seed
from tests.e2e.conftest import Widget
from tests.e2e.test_dashboard import row, sign_in
from tests.e2e.test_widget import open_widget, send
from tests.support import AppProcess

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]


def violations(target: Page | Frame, axe_source: str) -> list[str]:
    """axe-core's findings in ``target``, one readable line per rule and element."""
    if not target.evaluate("typeof window.axe !== 'undefined'"):
        target.evaluate(axe_source)  # runs in the page's own world
    found = target.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
        .violations.flatMap(v => v.nodes.map(n => `${v.id} (${v.impact}) at ${n.target.join(' ')}`
            + `: ${n.failureSummary.split('\\n').slice(1).join(' ')}`))""")
    return [str(line) for line in found]


def test_every_screen_passes_the_accessibility_checks(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, axe_source: str,
) -> None:
    widget = embed(start_app(app_env))
    visitor = new_context().new_page()
    frame_locator = open_widget(visitor, widget.host.url)
    chat = next(f for f in visitor.frames if "/frame" in f.url)
    screens: dict[str, Page | Frame] = {"widget, welcome": chat}
    found = {name: violations(target, axe_source) for name, target in screens.items()}

    frame_locator.get_by_label("Your name").fill("Maria Silva")
    send(frame_locator, "Where is my parcel? https://shop.example/orders/1042")
    expect(frame_locator.get_by_role("link", name="https://shop.example/orders/1042")).to_be_visible()
    found["widget, conversation"] = violations(chat, axe_source)

    agent = new_context().new_page()
    agent.goto(widget.app.url + "/login")
    found["sign-in"] = violations(agent, axe_source)
    alex = sign_in(agent.context, widget.app, seed.email, seed.password)
    expect(row(alex, "Maria Silva")).to_be_visible()
    found["inbox"] = violations(alex, axe_source)
    row(alex, "Maria Silva").get_by_role("link").click()
    expect(alex.get_by_role("button", name="Claim")).to_be_visible()
    alex.get_by_role("textbox", name="Reply").fill("Here: https://shop.example/track/1042")
    alex.get_by_role("textbox", name="Reply").press("Enter")
    expect(alex.get_by_role("link", name="https://shop.example/track/1042")).to_be_visible()
    found["conversation"] = violations(alex, axe_source)
    for path in ("/settings", "/agents", "/canned", "/profile"):
        alex.goto(widget.app.url + path)
        found[path] = violations(alex, axe_source)

    assert {name: lines for name, lines in found.items() if lines} == {}
