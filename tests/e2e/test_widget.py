"""The widget as customers use it: embedded in another origin's page, in a real Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import BrowserContext, FrameLocator, Page, Route, expect

from chat import db
from chat.queries import sites
from chat.sites import embed_snippet
from tests.conftest import Seed
from tests.e2e.agent import AgentSession, AgentStream
from tests.e2e.conftest import Widget, screenshot_dir
from tests.integration.test_identity import signature
from tests.support import AppProcess, run_async, wait_for

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]


def open_widget(page: Page, url: str) -> FrameLocator:
    page.goto(url)
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("iframe[title=Chat]")
    expect(frame.get_by_role("textbox", name="Message")).to_be_focused()
    return frame


def send(frame: FrameLocator, text: str) -> None:
    box = frame.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    expect(frame.locator(".entry.visitor:not(.pending)", has_text=text)).to_have_count(1)


def conversation_of(frame: FrameLocator) -> int:
    view = frame.locator("[data-view=conversation]")
    return int(view.get_attribute("data-conversation") or 0)


def test_a_visitor_and_an_agent_chat_live_across_reloads_pages_and_tabs(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    visitor = new_context()
    visitor.add_init_script("window.__sounds = 0;"
                            "addEventListener('chatwidget:sound', () => window.__sounds++)")
    page = visitor.new_page()
    frame = open_widget(page, widget.host.url)
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    inbox = AgentStream(agent)

    send(frame, "Hello, has my order shipped?")
    inbox.wait_for_text("has my order shipped?")  # the agent's inbox shows it, live
    conversation = conversation_of(frame)
    agent.reply(conversation, "Yes, it left this morning.")
    expect(frame.locator(".entry.agent", has_text="left this morning")).to_be_visible()
    expect(frame.locator("#announcer")).to_have_text("Alex: Yes, it left this morning.")
    expect(frame.get_by_text("Alex joined the conversation")).to_be_visible()
    expect(frame.locator(".conversation-status")).to_contain_text("Alex is here to help")

    # Closed: the launcher counts unread replies and the sound hook fires.
    page.get_by_role("button", name="Close chat").click()
    agent.reply(conversation, "Tracking number: 42.")
    expect(page.locator(".badge")).to_have_text("1")
    wait_for(lambda: page.evaluate("window.__sounds") == 1, 5, "the sound hook")

    # Reloading, then another page of the site: the same conversation, all of it, once.
    page.reload()
    frame = open_widget(page, widget.host.url)
    expect(frame.locator(".entry.agent")).to_have_count(2)
    expect(frame.locator(".entry.visitor")).to_have_count(1)
    second = visitor.new_page()
    other = open_widget(second, widget.host.origin + "/other.html")
    expect(other.locator(".entry.agent", has_text="Tracking number: 42.")).to_be_visible()

    # Both tabs stay live, whichever side writes.
    agent.reply(conversation, "Anything else?")
    for tab in (frame, other):
        expect(tab.locator(".entry.agent", has_text="Anything else?")).to_have_count(1)
    send(other, "No, thank you!")
    expect(frame.locator(".entry.visitor", has_text="No, thank you!")).to_have_count(1)
    inbox.close()
    agent.close()


def test_the_widget_reconnects_by_itself_after_its_server_is_killed_and_misses_nothing(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str], redis_url: str,
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    env = dict(app_env, REDIS_URL=redis_url)
    widget_app, agent_app = start_app(env), start_app(env)
    widget = embed(widget_app)
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "Are you there?")
    conversation = conversation_of(frame)
    agent = AgentSession(agent_app.url, seed.email, seed.password)
    agent.reply(conversation, "I am.")
    expect(frame.locator(".entry.agent", has_text="I am.")).to_be_visible()

    widget_app.kill()  # SIGKILL: the widget's stream is cut mid-flight
    for n in range(1, 4):
        agent.reply(conversation, f"Reply {n} while you were cut off")
    widget_app.start()  # the same port, as a restarted process would be

    replies = frame.locator(".entry.agent", has_text="while you were cut off")
    expect(replies).to_have_count(3, timeout=30_000)
    numbers = [re.search(r"Reply (\d)", text) for text in replies.all_inner_texts()]
    assert [match.group(1) for match in numbers if match] == ["1", "2", "3"]  # in order
    expect(frame.locator(".entry.agent")).to_have_count(4)
    agent.close()


def test_keyboard_enter_sends_shift_enter_breaks_the_line_and_escape_closes(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget],
) -> None:
    widget = embed(start_app(app_env))
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    box = frame.get_by_role("textbox", name="Message")
    box.press("Enter")
    expect(frame.get_by_role("alert")).to_have_text("Type a message first.")
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "first line\nsecond line"
    box.press("Enter")
    entry = frame.locator(".entry.visitor:not(.pending)")
    expect(entry).to_have_count(1)
    assert entry.locator(".body").inner_text() == "first line\nsecond line"
    expect(box).to_have_value("")
    box.press("Escape")
    expect(page.locator("iframe[title=Chat]")).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()


def test_a_closed_conversation_offers_a_new_one_and_keeps_the_old_one_reachable(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "My first question")
    first = conversation_of(frame)
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    agent.act(first, "close")
    expect(frame.locator(".conversation-status")).to_contain_text("This conversation is closed.")
    expect(frame.get_by_role("textbox", name="Message")).to_be_disabled()
    frame.get_by_role("button", name="Start a new conversation").click()
    send(frame, "A second question")
    assert conversation_of(frame) != first
    frame.get_by_role("button", name="Past conversations").click()
    frame.get_by_role("button", name=re.compile("My first question")).click()
    expect(frame.locator(".entry.visitor", has_text="My first question")).to_be_visible()
    expect(frame.locator(".conversation-status")).to_contain_text("closed")
    agent.close()


def test_a_send_that_fails_shows_retry_and_the_retry_delivers_it_once(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget],
) -> None:
    widget = embed(start_app(app_env))
    context = new_context()
    page = context.new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "hello")
    failures = {"left": 1}

    def flaky(route: object) -> None:  # the network drops the first attempt
        if failures["left"]:
            failures["left"] -= 1
            route.abort()  # type: ignore[attr-defined]
        else:
            route.continue_()  # type: ignore[attr-defined]

    context.route(re.compile(r".*/messages$"), flaky)
    box = frame.get_by_role("textbox", name="Message")
    box.fill("this one gets lost at first")
    box.press("Enter")
    failed = frame.locator(".entry.failed")
    expect(failed).to_contain_text("Not sent.")
    failed.get_by_role("button", name="Retry").click()
    expect(frame.locator(".entry.visitor:not(.pending)", has_text="gets lost")).to_have_count(1)
    expect(frame.locator(".entry.failed")).to_have_count(0)


def test_the_widget_leaves_the_host_page_alone(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget],
) -> None:
    widget = embed(start_app(app_env))
    page = new_context().new_page()
    page.add_init_script("window.__before = new Set(Object.keys(window))")
    page.goto(widget.host.url)
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible()
    added = page.evaluate("Object.keys(window).filter(k => !__before.has(k) && k !== '__before')")
    assert added == ["ChatWidget"]
    # The host's `button {background: red}` and `iframe {border: 5px}` do not reach it.
    assert launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(37, 99, 235)"
    page.evaluate("ChatWidget.open()")
    frame = page.locator("iframe[title=Chat]")
    assert frame.evaluate("f => getComputedStyle(f).borderTopWidth") == "0px"
    page.evaluate("ChatWidget.close()")
    expect(frame).to_be_hidden()


def test_screenshots_of_the_widget(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, tmp_path: Path,
) -> None:
    """Taken on every run (look at them in test-artifacts/); UPDATE_SCREENSHOTS=1 also
    refreshes the README's copies in docs/screenshots."""
    widget = embed(start_app(app_env))
    target = screenshot_dir()
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    dashboard = AgentStream(agent)  # the team is online, as it is when agents answer:
    dashboard.wait_for_text("hx-partial")  # a dashboard open (its first frames came)
    agent.http.post("/presence/here", headers={"X-CSRF-Token": agent.csrf})  # and visible
    page = new_context().new_page()
    page.goto(widget.host.url)
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    page.screenshot(path=target / "widget-closed.png")
    frame = open_widget(page, widget.host.url)
    expect(frame.locator("#team-presence")).to_have_text("Online")
    page.screenshot(path=target / "widget-open.png")
    send(frame, "Hi! I ordered the blue mug last week. Any news?")
    conversation = conversation_of(frame)
    agent.reply(conversation, "Hello! It shipped yesterday, tracking number AC-1042.")
    send(frame, "Wonderful, thank you!")
    expect(frame.locator(".entry.agent")).to_have_count(1)
    page.screenshot(path=target / "widget-conversation.png")
    phone = new_context(viewport={"width": 390, "height": 780}, is_mobile=True,
                        has_touch=True, device_scale_factor=2).new_page()
    open_widget(phone, widget.host.url)
    phone.screenshot(path=target / "widget-phone.png")
    dashboard.close()
    agent.close()


def test_scrolling_to_the_top_loads_earlier_messages_in_order_without_counting_them_as_new(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "message 0")
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    conversation = conversation_of(frame)
    for n in range(1, 40):
        agent.reply(conversation, f"message {n}")
    page.reload()
    frame = open_widget(page, widget.host.url)
    expect(frame.locator(".entry")).to_have_count(30)  # the latest page
    history = frame.locator("main")
    wait_for(lambda: history.evaluate("m => m.scrollHeight - m.scrollTop - m.clientHeight") < 80,
             5, "the conversation to open at its latest message")
    history.hover()
    page.mouse.wheel(0, -10_000)  # the visitor scrolls up to the top
    expect(frame.locator(".entry")).to_have_count(41)  # 40 messages and "joined"
    bodies = frame.locator(".entry .body").all_inner_texts()
    assert bodies[0] == "message 0" and bodies[-1] == "message 39"
    assert page.frames[1].evaluate("window.chatFrame.sounds") == 0
    agent.close()


def test_a_user_the_host_site_identifies_reaches_the_agent_verified(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    secret, email = "is_e2e_identity_secret", "maria@example.com"

    async def turn_on_verification() -> None:
        async with db.connect(database) as conn:
            site = await sites.by_public_key(conn, widget.site_key)
            assert site is not None
            await sites.set_identity_secret(conn, site["id"], secret)

    run_async(turn_on_verification())
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    page.evaluate("([email, hash]) => ChatWidget.identify({name: 'Maria Silva', email, hash})",
                  [email, signature(secret, email)])
    expect(frame.get_by_label("Your name")).to_have_value("Maria Silva")
    expect(frame.get_by_label("Email")).to_have_value(email)
    send(frame, "I'm signed in on your site")
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    view = agent.http.get(f"/conversations/{conversation_of(frame)}",
                          headers={"Accept": "text/html"})
    assert "Maria Silva" in view.text and ">Verified</span>" in view.text
    agent.close()


def paint(database: str, site_key: str, color: str) -> None:
    """Give the site this brand colour, as an admin would in its settings."""
    async def update() -> None:
        async with db.connect(database) as conn:
            await conn.execute(
                "UPDATE sites SET settings = settings || jsonb_build_object('color', $2::text) "
                "WHERE public_key = $1", site_key, color)

    run_async(update())


def test_the_closed_launcher_shows_the_sites_colour_before_the_chat_is_opened(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], database: str,
) -> None:
    widget = embed(start_app(app_env))
    paint(database, widget.site_key, "#16a34a")  # green
    page = new_context().new_page()
    page.goto(widget.host.url)
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_have_css("background-color", "rgb(22, 163, 74)")
    assert page.locator("iframe[title=Chat]").count() == 0  # no frame was needed for it


def test_identify_right_after_the_snippet_is_queued_until_the_loader_runs(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget],
) -> None:
    widget = embed(start_app(app_env))
    # The snippet as the Sites page prints it, with a call straight after it.
    (widget.host.directory / "snippet.html").write_text(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title></head><body>"
        + embed_snippet(widget.app.url, widget.site_key)
        + "<script>ChatWidget.identify({name: 'Ana Lima', email: 'ana@example.com'});"
        "ChatWidget.open()</script></body></html>")
    page = new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(widget.host.url + "snippet.html")
    frame = page.frame_locator("iframe[title=Chat]")
    expect(frame.get_by_label("Your name")).to_have_value("Ana Lima")
    expect(frame.get_by_label("Email")).to_have_value("ana@example.com")
    expect(page.get_by_role("button", name="Close chat")).to_be_visible()
    assert errors == []


def test_pre_chat_fields_typed_before_the_welcome_loads_are_kept(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget],
) -> None:
    widget = embed(start_app(app_env))
    page = new_context().new_page()
    held: list[Route] = []

    def hold(route: Route) -> None:  # the frame's fetch of its view waits for the test
        held.append(route)

    page.route("**/conversation", hold)
    page.goto(widget.host.url)
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("iframe[title=Chat]")
    for _ in range(200):  # Playwright's events only arrive while it waits
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the frame never asked for its view"
    frame.get_by_label("Your name").fill("Sam Early")
    frame.get_by_label("Email").fill("sam@example.com")
    held[0].continue_()
    page.unroute("**/conversation")
    expect(frame.locator("[data-view=welcome]")).to_have_count(1)
    page.wait_for_load_state("networkidle")
    expect(frame.get_by_label("Your name")).to_have_value("Sam Early")
    expect(frame.get_by_label("Email")).to_have_value("sam@example.com")
    expect(frame.get_by_label("Email")).to_be_focused()  # the caret stays where they type


def test_pre_chat_text_is_plain_and_focus_rings_show_on_a_light_brand_colour(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], database: str,
) -> None:
    widget = embed(start_app(app_env))
    paint(database, widget.site_key, "#fde68a")  # pale yellow
    page = new_context().new_page()
    page.goto(widget.host.url)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past the host's link, onto the launcher
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_focused()
    expect(launcher).to_have_css("outline-color", "rgb(17, 24, 39)")
    page.screenshot(path="/tmp/also-focus-launcher.png")
    launcher.press("Enter")
    frame = page.frame_locator("iframe[title=Chat]")
    name = frame.get_by_label("Your name")
    expect(name).to_have_css("font-weight", "400")
    page.wait_for_load_state("networkidle")  # the fetched view has replaced the page's own
    name.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focused by keyboard, so :focus-visible applies
    expect(name).to_have_css("outline-color", "rgb(17, 24, 39)")
    expect(name).to_have_css("box-shadow", re.compile(r"rgb\(255, 255, 255\)"))
    page.screenshot(path="/tmp/also-focus-input.png")


def test_identify_during_a_chat_updates_who_the_agents_see(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "Hello, anonymous for now")
    page.evaluate("ChatWidget.identify({name: 'Jo Brand', email: 'jo@example.com'})")
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    path = f"/conversations/{conversation_of(frame)}"

    def shown() -> bool:
        text = agent.http.get(path, headers={"Accept": "text/html"}).text
        return "Jo Brand" in text and "jo@example.com" in text

    wait_for(shown, timeout=10, what="the identity in the agent's view")
    agent.close()
