"""The dashboard as agents use it, next to a visitor in the widget, in a real Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, FrameLocator, Page, Route, expect

from chat import db
from chat.actions.agents import create_agent
from chat.queries import canned
from tests.conftest import Seed
from tests.e2e.agent import AgentSession
from tests.e2e.conftest import Widget, screenshot_dir
from tests.e2e.test_widget import conversation_of, open_widget, send
from tests.support import AppProcess, run_async

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]


def sign_in(context: BrowserContext, app: AppProcess, email: str, password: str) -> Page:
    page = context.new_page()
    page.goto(app.url + "/inbox")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    return page


def add_agent(database: str, name: str, email: str) -> None:
    async def add() -> None:
        async with db.connect(database) as conn:
            await create_agent(conn, email=email, name=name, password="agent password")

    run_async(add())


def add_canned(database: str, shortcut: str, body: str, agent_id: int) -> None:
    async def add() -> None:
        async with db.connect(database) as conn:
            await canned.insert(conn, shortcut=shortcut, body=body, created_by=agent_id)

    run_async(add())


def wait_until(page: Page, condition: Callable[[], bool], timeout_ms: int = 10_000) -> None:
    """Polls ``condition`` while letting Playwright dispatch events (route handlers) meanwhile."""
    for _ in range(timeout_ms // 50):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("condition not met in time")


def row(page: Page, text: str) -> object:
    return page.locator(".conversation-row", has_text=text)


def test_a_visitor_and_two_agents_work_a_conversation_live(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    add_agent(database, "Sam", "sam@example.com")
    add_canned(database, "greet", "Hello! Thanks for reaching out.", seed.agent_id)
    alex = sign_in(new_context(), widget.app, seed.email, seed.password)
    sam = sign_in(new_context(), widget.app, "sam@example.com", "agent password")
    sam.get_by_role("link", name=re.compile("All open")).click()
    visitor = new_context().new_page()
    frame = open_widget(visitor, widget.host.url)

    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Hi! My invoice is missing.")
    waiting = row(alex, "Maria Silva")
    expect(waiting).to_contain_text("My invoice is missing.")  # live, in Waiting
    expect(waiting.locator("time.ago")).to_have_text("now")  # relative, from the swap on
    expect(waiting.locator(".unread")).to_have_text("1")
    expect(alex).to_have_title(re.compile(r"^\(1\) Inbox"))
    expect(alex.locator("#announcer")).to_have_text(  # for screen readers, in the live region
        "New conversation from Maria Silva: Hi! My invoice is missing.")
    expect(row(sam, "Maria Silva")).to_contain_text("Unassigned")

    second_tab = alex.context.new_page()  # one agent, two tabs: both stay live
    second_tab.goto(widget.app.url + "/inbox?tab=open")
    waiting.get_by_role("link").click()
    expect(alex.get_by_role("button", name="Claim")).to_be_visible()
    alex.wait_for_load_state()
    alex.keyboard.press("r")
    expect(alex.get_by_role("textbox", name="Reply")).to_be_focused()
    alex.get_by_role("button", name="Claim").click()
    expect(alex.locator(".conversation-status")).to_contain_text("Active · Alex")
    expect(row(sam, "Maria Silva")).to_contain_text("Alex")  # moved to Alex, live
    expect(frame.get_by_text("Alex joined the conversation")).to_be_visible()
    expect(row(second_tab, "Maria Silva")).to_contain_text("Alex")

    reply = alex.get_by_role("textbox", name="Reply")
    reply.type("/gre")  # a canned response, by its shortcut
    expect(alex.get_by_role("option", name=re.compile("greet"))).to_be_visible()
    reply.press("Enter")
    expect(reply).to_have_value("Hello! Thanks for reaching out.")
    reply.fill("Hello Maria! I'm sending it again now.")
    reply.press("Enter")
    expect(frame.locator(".entry.agent", has_text="sending it again")).to_be_visible()
    alex.get_by_label("Private note").check()
    reply.fill("Billing address was outdated")
    alex.get_by_role("button", name="Send").click()
    expect(alex.locator(".entry.note", has_text="Billing address")).to_be_visible()
    send(frame, "Got it, thanks!")
    expect(alex.locator(".entry.visitor", has_text="Got it, thanks!")).to_have_count(1)
    expect(alex.locator("#announcer")).to_have_text("Maria Silva: Got it, thanks!")
    expect(frame.get_by_text("Billing address")).to_have_count(0)  # notes stay private

    alex.get_by_role("button", name="Close conversation").click()
    expect(frame.locator(".conversation-status")).to_contain_text("This conversation is closed.")
    expect(alex.get_by_role("button", name="Reopen")).to_be_visible()
    expect(row(sam, "Maria Silva")).to_be_hidden()  # closed: out of "All open"


def test_two_agents_claiming_together_end_up_agreeing_on_one_owner(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    add_agent(database, "Sam", "sam@example.com")
    visitor = new_context().new_page()
    frame = open_widget(visitor, widget.host.url)
    send(frame, "Who will answer me?")
    pages = [sign_in(new_context(), widget.app, seed.email, seed.password),
             sign_in(new_context(), widget.app, "sam@example.com", "agent password")]
    held: list[Route] = []
    for page in pages:
        row(page, "Who will answer me?").get_by_role("link").click()
        expect(page.get_by_role("button", name="Claim")).to_be_visible()
        page.route("**/claim", lambda route: held.append(route))
    for page in pages:  # the claims reach the server only once both agents have clicked
        page.get_by_role("button", name="Claim").click()
    wait_until(pages[0], lambda: len(held) == 2)
    for route in held:
        route.continue_()
    owners = set()
    for page in pages:
        status = page.locator(".conversation-status .state")
        expect(status).to_have_text(re.compile(r"Active · (Alex|Sam)"))
        owners.add(status.inner_text())
    assert len(owners) == 1  # both agents see the same, single owner
    expect(frame.locator(".entry.activity", has_text="joined")).to_have_count(1)


def test_a_backgrounded_dashboard_keeps_receiving(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    alex = sign_in(new_context(), widget.app, seed.email, seed.password)
    alex.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {get: () => true});
        Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    visitor = new_context().new_page()
    frame = open_widget(visitor, widget.host.url)
    for n in range(3):
        send(frame, f"Message {n} while the agent's tab is hidden")
    expect(row(alex, "while the agent's tab is hidden")).to_contain_text("Message 2")
    expect(row(alex, "Message 2").locator(".unread")).to_have_text("3")


def test_the_dashboard_reconnects_by_itself_after_its_server_is_killed(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str], redis_url: str,
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    env = dict(app_env, REDIS_URL=redis_url)
    agent_app, widget_app = start_app(env), start_app(env)
    widget = embed(widget_app)
    visitor = new_context().new_page()
    frame = open_widget(visitor, widget.host.url)
    send(frame, "Hello?")
    alex = sign_in(new_context(), agent_app, seed.email, seed.password)
    row(alex, "Hello?").get_by_role("link").click()
    alex.get_by_role("button", name="Claim").click()
    expect(frame.get_by_text("Alex joined the conversation")).to_be_visible()

    agent_app.kill()  # SIGKILL: the dashboard's stream is cut
    expect(alex.locator("#connection")).to_have_text("Reconnecting…", timeout=15_000)
    for n in range(1, 4):
        send(frame, f"Visitor message {n} during the outage")
    agent_app.start()

    arrived = alex.locator(".entry.visitor", has_text="during the outage")
    expect(arrived).to_have_count(3, timeout=30_000)
    numbers = [re.search(r"message (\d)", text) for text in arrived.all_inner_texts()]
    assert [match.group(1) for match in numbers if match] == ["1", "2", "3"]
    expect(alex.locator("#connection")).to_have_text("")
    expect(row(alex, "during the outage")).to_contain_text("Visitor message 3")


def test_screenshots_of_the_dashboard(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    """Look at them in test-artifacts/; UPDATE_SCREENSHOTS=1 refreshes docs/screenshots."""
    widget = embed(start_app(app_env))
    target = screenshot_dir()
    context = new_context(viewport={"width": 1400, "height": 820})
    page = context.new_page()
    page.goto(widget.app.url + "/login")
    page.screenshot(path=target / "dashboard-sign-in.png")
    alex = sign_in(context, widget.app, seed.email, seed.password)
    alex.screenshot(path=target / "dashboard-inbox-empty.png")
    visitors = [("Maria Silva", "Hi! My invoice for order 1042 is missing."),
                ("John Roe", "Do you ship to Canada?"),
                ("Aiko Tanaka", "Can I change the size of my order?"),
                ("", "Hello, is anyone there?")]
    frame: FrameLocator | None = None
    for name, text in visitors:
        frame = open_widget(new_context().new_page(), widget.host.url)
        if name:
            frame.get_by_label("Your name").fill(name)
        send(frame, text)
    expect(alex.locator(".conversation-row")).to_have_count(4)
    alex.get_by_role("link", name=re.compile("All open")).click()
    expect(alex.locator("[data-count=open]")).to_have_text("4")  # the page's script has run
    alex.screenshot(path=target / "dashboard-inbox.png")
    row(alex, "Maria Silva").get_by_role("link").click()
    alex.get_by_role("button", name="Claim").click()
    reply = alex.get_by_role("textbox", name="Reply")
    reply.fill("Hello Maria! I'm sorry about that, I'm resending it now.")
    reply.press("Enter")
    alex.get_by_label("Private note").check()
    reply.fill("Invoice went to the old billing address.")
    reply.press("Enter")
    expect(alex.locator(".entry.note")).to_have_count(1)
    visitor_pane = alex.get_by_role("complementary", name="Visitor")
    expect(visitor_pane).to_contain_text(re.compile(r"Chrome \d+ on Linux"))  # not the raw UA
    expect(visitor_pane.get_by_role("link", name=widget.host.url)).to_be_visible()
    alex.screenshot(path=target / "dashboard-conversation.png")
    alex.goto(widget.app.url + "/settings")
    alex.screenshot(path=target / "dashboard-settings.png")


def open_as_agent(new_context: NewContext, widget: Widget, seed: Seed) -> tuple[Page, FrameLocator]:
    """A visitor, Maria Silva, starts a conversation; the seeded agent opens and claims it."""
    agent = sign_in(new_context(), widget.app, seed.email, seed.password)
    frame = open_widget(new_context().new_page(), widget.host.url)
    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Hello there")
    row(agent, "Maria Silva").get_by_role("link").click()
    agent.get_by_role("button", name="Claim").click()
    expect(agent.locator(".conversation-status")).to_contain_text("Active")
    return agent, frame


def test_the_private_note_box_is_unticked_after_a_note_is_sent(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    agent, frame = open_as_agent(new_context, embed(start_app(app_env)), seed)
    agent.get_by_label("Private note").check()
    reply = agent.get_by_role("textbox", name="Reply")
    reply.fill("Check the billing address")
    reply.press("Enter")
    expect(agent.locator(".entry.note:not(.pending)", has_text="billing")).to_have_count(1)
    expect(agent.get_by_label("Private note")).not_to_be_checked()
    reply.fill("Thanks, sorted")
    reply.press("Enter")
    expect(frame.locator(".entry.agent", has_text="Thanks, sorted")).to_be_visible()


def test_a_conversation_page_is_titled_after_its_visitor_with_the_unread_prefix(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    agent, _ = open_as_agent(new_context, widget, seed)
    expect(agent).to_have_title("Maria Silva — Chat")
    other = open_widget(new_context().new_page(), widget.host.url)
    other.get_by_label("Your name").fill("Lee Park")
    send(other, "A second question")
    expect(agent).to_have_title("(1) Maria Silva — Chat")  # the unread count still leads


def test_the_closed_tab_stays_whole_when_every_count_has_two_digits(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    agent = sign_in(new_context(), embed(start_app(app_env)).app, seed.email, seed.password)
    agent.set_viewport_size({"width": 1280, "height": 800})
    agent.evaluate("document.querySelectorAll('.tabs .count')"
                   ".forEach(function (c) { c.textContent = '88'; })")
    closed = agent.get_by_role("link", name=re.compile("^Closed"))
    tabs = agent.get_by_role("navigation", name="Inbox filters")
    edge, bar = closed.bounding_box(), tabs.bounding_box()
    assert edge is not None and bar is not None
    assert edge["x"] + edge["width"] <= bar["x"] + bar["width"]
    assert tabs.evaluate("n => n.scrollWidth <= n.clientWidth")
    agent.screenshot(path="/tmp/also-tabs.png")


def test_the_reply_box_is_disabled_while_the_conversation_is_closed(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    agent, frame = open_as_agent(new_context, embed(start_app(app_env)), seed)
    other_tab = agent.context.new_page()  # the same conversation, where nobody clicks
    other_tab.goto(agent.url)
    reply = agent.get_by_role("textbox", name="Reply")
    agent.get_by_role("button", name="Close conversation").click()
    expect(reply).to_be_disabled()  # live, on this agent's own close
    expect(other_tab.get_by_role("textbox", name="Reply")).to_be_disabled()  # and from the stream
    expect(agent.get_by_text("This conversation is closed. Reopen it to reply.")).to_be_visible()
    expect(agent.get_by_role("button", name="Send")).to_be_disabled()
    expect(frame.get_by_role("textbox", name="Message")).to_be_disabled()
    agent.screenshot(path="/tmp/also-closed-reply.png")
    agent.reload()
    expect(reply).to_be_disabled()  # rendered so by the server
    expect(reply).to_have_accessible_description("This conversation is closed. Reopen it to reply.")
    agent.get_by_role("button", name="Reopen").click()
    expect(reply).to_be_enabled()
    expect(agent.get_by_text("Reopen it to reply")).to_be_hidden()
    expect(other_tab.get_by_role("textbox", name="Reply")).to_be_enabled()
    expect(frame.get_by_role("textbox", name="Message")).to_be_enabled()  # the visitor's, live
    reply.fill("Back again")
    reply.press("Enter")
    expect(frame.locator(".entry.agent", has_text="Back again")).to_be_visible()


def test_the_assign_list_follows_a_claim_made_by_another_agent(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    add_agent(database, "Sam", "sam@example.com")
    send(open_widget(new_context().new_page(), widget.host.url), "Anyone there?")
    alex = sign_in(new_context(), widget.app, seed.email, seed.password)
    sam = sign_in(new_context(), widget.app, "sam@example.com", "agent password")
    for page in (alex, sam):
        row(page, "Anyone there?").get_by_role("link").click()
    assign = alex.get_by_label("Assign to")
    expect(assign.locator("option:checked")).to_have_text("Unassigned")
    sam.get_by_role("button", name="Claim").click()
    expect(alex.locator(".conversation-status .state")).to_have_text("Active · Sam")
    expect(assign.locator("option:checked")).to_have_text("Sam")  # live, not the stale choice
    alex.get_by_role("button", name="Assign").click()  # keeping it on Sam changes nothing
    expect(alex.locator(".conversation-status .state")).to_have_text("Active · Sam")
    alex.reload()
    expect(assign.locator("option:checked")).to_have_text("Sam")


def counts(page: Page) -> dict[str, str]:
    """The tabs' counts as the page shows them (Closed has none)."""
    return {key: page.locator(f"[data-count={key}]").inner_text()
            for key in ("waiting", "mine", "open")}


def test_tabs_and_their_counts_follow_what_another_agent_does(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    add_agent(database, "Sam", "sam@example.com")
    waiting = sign_in(new_context(), widget.app, seed.email, seed.password)
    mine, closed = waiting.context.new_page(), waiting.context.new_page()  # one stream for all
    mine.goto(widget.app.url + "/inbox?tab=mine")
    closed.goto(widget.app.url + "/inbox?tab=closed")
    frame = open_widget(new_context().new_page(), widget.host.url)
    send(frame, "Who takes this one?")
    conversation = conversation_of(frame)
    expect(row(waiting, "Who takes this one?")).to_be_visible()
    expect(waiting.get_by_text("Nothing here right now.")).to_be_hidden()
    for page in (mine, closed):
        expect(row(page, "Who takes this one?")).to_be_hidden()
    wait_until(waiting, lambda: counts(waiting) == {"waiting": "1", "mine": "", "open": "1"})
    assert counts(mine) == counts(closed) == counts(waiting)

    sam = AgentSession(widget.app.url, "sam@example.com", "agent password")
    sam.act(conversation, "claim")  # no longer waiting, and not Alex's
    expect(row(waiting, "Who takes this one?")).to_be_hidden()
    expect(waiting.get_by_text("Nothing here right now.")).to_be_visible()
    wait_until(waiting, lambda: counts(waiting) == {"waiting": "", "mine": "", "open": "1"})
    assert counts(mine) == counts(waiting)

    handed = sam.http.post(f"/conversations/{conversation}/assign",
                           data={"assignee_id": str(seed.agent_id)},
                           headers={"X-CSRF-Token": sam.csrf})
    assert handed.status_code == 200, handed.text
    expect(row(mine, "Who takes this one?")).to_be_visible()  # Alex's now
    wait_until(mine, lambda: counts(mine) == {"waiting": "", "mine": "1", "open": "1"})
    assert counts(waiting) == counts(mine)

    sam.act(conversation, "close")
    expect(row(closed, "Who takes this one?")).to_be_visible()
    expect(row(mine, "Who takes this one?")).to_be_hidden()
    wait_until(mine, lambda: counts(mine) == {"waiting": "", "mine": "", "open": ""})
    assert counts(waiting) == counts(closed) == counts(mine)
    sam.close()
