"""Awareness in a real Chromium: who is typing, viewing and online, on both sides."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from chat.signals import TYPING_IDLE
from tests.conftest import Seed
from tests.e2e.conftest import Widget
from tests.e2e.test_dashboard import add_agent, row, sign_in
from tests.e2e.test_widget import conversation_of, open_widget, send
from tests.support import AppProcess

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]

# The page says "stopped" TYPING_IDLE s after the last key; a signal takes well under a second.
GONE_MS = int((TYPING_IDLE + 3) * 1000)
QUICK_MS = 3_000  # a refresh or a message: at once, not at an expiry

# Signals are never replayed: a page hears them once its stream is open (live.js says when).
WATCH_STREAM = "document.addEventListener('live:connected', () => { window.__live = true; })"


def live(page: Page) -> None:
    page.wait_for_function("() => window.__live === true")


# Every text the element ever showed, so a test can tell it never showed something.
RECORD_TEXTS = """element => {
    window.__texts = [];
    new MutationObserver(() => window.__texts.push(element.textContent.trim()))
        .observe(element, {childList: true, subtree: true, characterData: true});
}"""


def test_typing_shows_both_ways_and_agents_see_each_other_but_the_visitor_never_sees_a_note(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    add_agent(database, "Sam", "sam@example.com")
    alex = sign_in(new_context(), widget.app, seed.email, seed.password)
    sam_context = new_context()
    sam_context.add_init_script(WATCH_STREAM)
    sam = sign_in(sam_context, widget.app, "sam@example.com", "agent password")
    visitor = new_context().new_page()
    frame = open_widget(visitor, widget.host.url)
    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Hello, anyone there?")
    conversation = conversation_of(frame)
    row(alex, "Maria Silva").get_by_role("link").click()
    alex.get_by_role("button", name="Claim").click()
    expect(frame.get_by_text("Alex joined the conversation")).to_be_visible()

    # The visitor types: the agent sees it in the conversation, and another on the inbox row.
    sam.get_by_role("link", name=re.compile("All open")).click()
    live(sam)
    alex_sees = alex.locator(f"#awareness-{conversation}")
    expect(alex_sees).to_have_attribute("role", "status")
    frame.get_by_role("textbox", name="Message").press_sequentially("Where is my ord")
    expect(alex_sees).to_have_text("Maria Silva is typing…", timeout=QUICK_MS)
    expect(row(sam, "Maria Silva").locator(".typing-mark")).to_have_text("typing…")
    expect(alex_sees).to_have_text("", timeout=GONE_MS)  # the keys rested
    expect(row(sam, "Maria Silva").locator(".typing-mark")).to_have_text("")
    frame.get_by_role("textbox", name="Message").press_sequentially("er?")
    expect(alex_sees).to_have_text("Maria Silva is typing…", timeout=QUICK_MS)
    frame.get_by_role("textbox", name="Message").press("Enter")
    expect(alex.locator(".entry.visitor", has_text="Where is my order?")).to_be_visible()
    expect(alex_sees).to_have_text("", timeout=QUICK_MS)  # the message ends it at once

    # A second agent opens the conversation: each sees the other viewing, and typing a reply.
    row(sam, "Maria Silva").get_by_role("link").click()
    sam_sees = sam.locator(f"#awareness-{conversation}")
    expect(sam_sees).to_have_text("Alex is viewing")
    expect(alex_sees).to_have_text("Sam is viewing")
    visitor_sees = frame.locator(f"#awareness-{conversation}")
    alex.get_by_role("textbox", name="Reply").press_sequentially("Let me check")
    expect(visitor_sees).to_have_text("Alex is typing…", timeout=QUICK_MS)
    expect(sam_sees).to_have_text("Alex is typing a reply…", timeout=QUICK_MS)
    alex.get_by_role("textbox", name="Reply").press("Enter")
    expect(frame.locator(".entry.agent", has_text="Let me check")).to_be_visible()
    expect(visitor_sees).to_have_text("", timeout=QUICK_MS)
    expect(sam_sees).to_have_text("Alex is viewing", timeout=QUICK_MS)

    # A private note being typed: the other agent sees it, the visitor sees nothing at all.
    visitor_sees.evaluate(RECORD_TEXTS)
    alex.get_by_label("Private note").check()
    alex.get_by_role("textbox", name="Reply").press_sequentially("Courier is late")
    expect(sam_sees).to_have_text("Alex is writing a private note…", timeout=QUICK_MS)
    alex.get_by_role("textbox", name="Reply").press("Enter")
    expect(sam.locator(".entry.note", has_text="Courier is late")).to_be_visible()
    alex.get_by_label("Private note").uncheck()
    during_the_note = frame.locator("body").evaluate("() => window.__texts")
    alex.get_by_role("textbox", name="Reply").press_sequentially("It ships")
    expect(visitor_sees).to_have_text("Alex is typing…", timeout=QUICK_MS)  # the stream is live
    assert not any(during_the_note), during_the_note
    expect(frame.get_by_text("Courier is late")).to_have_count(0)

    # An agent who leaves stops showing as viewing.
    sam.close()
    expect(alex_sees).to_have_text("", timeout=QUICK_MS)
