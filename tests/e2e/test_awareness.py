"""Awareness in a real Chromium: who is typing, viewing and online, on both sides."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Locator, Page, expect

from chat.signals import TYPING_IDLE
from tests.conftest import Seed
from tests.e2e.conftest import Widget, screenshot_dir
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


def hide(page: Page) -> None:
    """What a browser does to a tab in the background: it says it is hidden."""
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: true, configurable: true});
        Object.defineProperty(document, "visibilityState", {value: "hidden",
                                                            configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")


def test_the_widget_shows_the_team_online_until_the_last_agent_leaves_then_asks_for_an_email(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(dict(app_env, PRESENCE_TTL="3")))
    alex_context = new_context()
    alex = sign_in(alex_context, widget.app, seed.email, seed.password)
    expect(alex.locator("#my-presence")).to_have_text("Online")
    maria = new_context()
    visitor = maria.new_page()
    frame = open_widget(visitor, widget.host.url)
    presence = frame.locator("#team-presence")
    expect(presence).to_have_text("Online")
    expect(frame.get_by_label("Email (optional)")).to_be_visible()
    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Hello, anyone there?")
    expect(frame.get_by_text("Waiting for an agent to join…")).to_be_visible()

    # The agent opens it: the visitor is online now, on the page they wrote from.
    row(alex, "Maria Silva").get_by_role("link").click()
    conversation = conversation_of(frame)
    expect(alex.locator(f"#visitor-presence-{conversation}")).to_have_text("Online now")
    expect(alex.locator(f"#visitor-page-{conversation}")).to_have_text(widget.host.url)
    visitor.close()
    expect(alex.locator(f"#visitor-presence-{conversation}")).to_contain_text("Last seen")

    # The visitor comes back; the only agent closes the dashboard: past the TTL, the widget
    # says the team is away, and promises an answer instead of an agent.
    visitor = maria.new_page()
    frame = open_widget(visitor, widget.host.url)
    expect(frame.locator("#team-presence")).to_have_text("Online")
    expect(alex.locator(f"#visitor-presence-{conversation}")).to_have_text("Online now")
    alex_context.close()
    expect(frame.locator("#team-presence")).to_have_text("Away", timeout=15_000)
    expect(frame.get_by_text("Waiting for an agent to join…")).to_be_hidden()
    expect(frame.get_by_text("We're away right now")).to_be_visible()
    # A new visitor gets the leave-a-message welcome, asking for an email.
    stranger = open_widget(new_context().new_page(), widget.host.url)
    expect(stranger.locator("#team-presence")).to_have_text("Away")
    expect(stranger.get_by_label("Email (so that we can reply)")).to_be_visible()


def test_an_agent_whose_tabs_are_hidden_turns_away_once_and_offline_only_when_they_close(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    app = start_app(dict(app_env, PRESENCE_TTL="3", AWAY_AFTER="4"))
    add_agent(database, "Sam", "sam@example.com")
    sam = sign_in(new_context(), app, "sam@example.com", "agent password")
    alex_context = new_context()
    alex = sign_in(alex_context, app, seed.email, seed.password)
    team = sam.get_by_role("list", name="Team")
    expect(team).to_have_text(re.compile(r"Alex\s+Online"))
    # Each team frame replaces #team: record its text at every change around it.
    sam.locator(".inbox-pane").evaluate(RECORD_TEXTS.replace(
        "element.textContent", "document.getElementById('team').textContent"))
    hide(alex)
    expect(team).to_have_text(re.compile(r"Alex\s+Away"), timeout=10_000)
    # Hidden, the tab sends nothing; the server keeps Alex away (never offline) while the
    # stream is open, however long: several TTLs here.
    alex.wait_for_timeout(7_000)
    alex_context.close()
    expect(team).to_have_text("Nobody else is online", timeout=10_000)
    shown = [re.sub(r"\s+", " ", text) for text in sam.evaluate("() => window.__texts")]
    alex_was = ["online" if "Alex Online" in t else "away" if "Alex Away" in t else "offline"
                for t in shown]
    changes = [status for i, status in enumerate(alex_was) if i == 0 or alex_was[i - 1] != status]
    assert changes == ["online", "away", "offline"] or changes == ["away", "offline"], shown
    # Set by hand: Sam goes away and back.
    sam.get_by_role("button", name="Set yourself away").click()
    expect(sam.locator("#my-presence")).to_have_text("Away")
    sam.get_by_role("button", name="Set yourself online").click()
    expect(sam.locator("#my-presence")).to_have_text("Online")


def test_each_side_sees_its_messages_go_sent_delivered_read_and_unread_replies_survive_a_reload(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    visitor = new_context()
    page = visitor.new_page()
    frame = open_widget(page, widget.host.url)
    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Is anyone there?")
    question = frame.locator(".entry.visitor", has_text="Is anyone there?").locator(".state")
    expect(question).to_have_text("Sent")  # no dashboard is open
    alex = sign_in(new_context(), widget.app, seed.email, seed.password)
    expect(row(alex, "Maria Silva")).to_be_visible()
    expect(question).to_have_text("Delivered")  # on the agent's inbox
    row(alex, "Maria Silva").get_by_role("link").click()
    expect(question).to_have_text("Read")  # the agent opened it
    conversation = conversation_of(frame)

    def reply(text: str) -> Locator:
        box = alex.get_by_role("textbox", name="Reply")
        box.fill(text)
        box.press("Enter")
        return alex.locator(".entry.agent:not(.pending)", has_text=text).locator(".state")

    # The chat is closed but its page open: the reply reaches it, and is read once opened.
    page.get_by_role("button", name="Close chat").click()
    answer = reply("Yes, Alex here. How can I help?")
    expect(answer).to_have_text("Delivered")
    page.get_by_role("button", name="Open chat").click()
    expect(answer).to_have_text("Read")

    # The visitor left: a reply stays Sent until they come back, and then counts as unread
    # on the launcher, which a reload does not reset.
    page.close()
    expect(alex.locator(f"#visitor-presence-{conversation}")).to_contain_text("Last seen")
    later = reply("Your parcel left this morning.")
    expect(later).to_have_text("Sent")
    for _ in range(2):
        page = visitor.new_page()
        page.goto(widget.host.url)
        expect(page.locator(".badge")).to_have_text("1")
        expect(later).to_have_text("Delivered")
        page.close()
    page = visitor.new_page()
    open_widget(page, widget.host.url)
    expect(later).to_have_text("Read")
    expect(alex.locator(".entry.agent .state")).to_have_text(["Read", "Read"])


def test_screenshots_of_typing_presence_and_receipts(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    """Look at them in test-artifacts/; UPDATE_SCREENSHOTS=1 refreshes docs/screenshots."""
    widget = embed(start_app(app_env))
    target = screenshot_dir()
    alex = sign_in(new_context(viewport={"width": 1400, "height": 820}), widget.app,
                   seed.email, seed.password)
    visitor = new_context(viewport={"width": 900, "height": 760}).new_page()
    frame = open_widget(visitor, widget.host.url)
    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Hi! My invoice for order 1042 is missing.")
    row(alex, "Maria Silva").get_by_role("link").click()
    alex.get_by_role("button", name="Claim").click()
    box = alex.get_by_role("textbox", name="Reply")
    box.fill("Sorry about that! I'm resending it now.")
    box.press("Enter")
    expect(alex.locator(".entry.agent .state")).to_have_text("Read")
    conversation = conversation_of(frame)
    expect(alex.locator(f"#visitor-presence-{conversation}")).to_have_text("Online now")

    frame.get_by_role("textbox", name="Message").press_sequentially("Thanks, and could")
    expect(alex.locator(f"#awareness-{conversation}")).to_contain_text("typing")
    alex.screenshot(path=target / "dashboard-awareness.png")
    box.press_sequentially("You're welcome")
    expect(frame.locator(f"#awareness-{conversation}")).to_have_text("Alex is typing…")
    expect(frame.locator(".entry.visitor .state")).to_have_text("Read")
    expect(frame.locator("#team-presence")).to_have_text("Online")
    visitor.screenshot(path=target / "widget-awareness.png")
