"""A visitor who hits a limit is told why and when to try again, and the retry works."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, expect

from tests.e2e.conftest import Widget
from tests.e2e.test_widget import open_widget, send
from tests.support import AppProcess

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]


def test_a_visitor_sending_too_fast_sees_why_and_retries_after_the_wait(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget],
) -> None:
    widget = embed(start_app(dict(app_env, RATE_LIMITS="on")))
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "Hello")  # starts the conversation (limited apart from messages)
    for n in range(10):
        send(frame, f"quick message {n}")
    box = frame.get_by_role("textbox", name="Message")
    box.fill("one too many")
    box.press("Enter")
    failed = frame.locator(".entry.failed", has_text="one too many")
    expect(failed).to_contain_text(re.compile(
        r"Not sent\. You're sending messages very fast\. Try again in \d+ seconds\."))
    retry = failed.get_by_role("button", name=re.compile(r"Retry"))
    expect(retry).to_have_text(re.compile(r"Retry in \d+ s"))
    expect(retry).to_be_disabled()
    expect(retry).to_have_text("Retry", timeout=15_000)  # the wait is over
    retry.click()
    expect(frame.locator(".entry.visitor:not(.pending)", has_text="one too many")
           ).to_have_count(1)
    expect(frame.locator(".entry.failed")).to_have_count(0)
