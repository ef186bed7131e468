"""SSE framing, cursors and the per-process frame cache."""

from __future__ import annotations

import pytest

from chat.events import Cursor, frame
from chat.frames import FrameCache


def test_a_frame_puts_every_line_of_data_on_its_own_data_line() -> None:
    assert frame("<p>\nhi\n</p>", event="x", id="3-7") == (
        b"event: x\nid: 3-7\ndata: <p>\ndata: hi\ndata: </p>\n\n")


def test_only_sse_line_ends_split_data_so_the_browser_rejoins_the_text_as_it_was() -> None:
    assert frame("a\u2028b\u0085c\x0bd\r\ne\rf\n") == (
        "data: a\u2028b\u0085c\x0bd\ndata: e\ndata: f\n\n".encode())


def test_a_frame_without_data_still_carries_a_data_line_so_browsers_dispatch_it() -> None:
    # htmx 4 drops a block with only ``retry:``: the named event carries it.
    assert frame(event="hello", retry=2000) == b"event: hello\nretry: 2000\ndata: \n\n"


@pytest.mark.parametrize(("value", "expected"), [
    ("12-34", Cursor(12, 34)),
    (" 1-0 ", Cursor(1, 0)),
    ("", None), (None, None), ("12", None), ("12-", None), ("a-1", None), ("1-2-3", None),
    ("-1-2", None), ("²-1", None), ("1-" + "9" * 19, None),
])
def test_cursors_parse_only_conversation_dash_sequence(value: str | None,
                                                      expected: Cursor | None) -> None:
    assert Cursor.parse(value) == expected


def test_a_cursor_round_trips_through_its_sse_id() -> None:
    assert Cursor.parse(str(Cursor(5, 9))) == Cursor(5, 9)


def test_the_frame_cache_renders_once_and_forgets_the_least_recently_used() -> None:
    cache = FrameCache(size=2)
    made: list[str] = []

    def make(name: str) -> bytes:
        made.append(name)
        return name.encode()

    assert cache.get(("a",), lambda: make("a")) == b"a"
    assert cache.get(("a",), lambda: make("a")) == b"a"
    cache.get(("b",), lambda: make("b"))
    cache.get(("a",), lambda: make("a"))  # a is now the most recently used
    cache.get(("c",), lambda: make("c"))  # so b goes
    cache.get(("b",), lambda: make("b"))
    assert made == ["a", "b", "c", "b"]
    assert cache.renders == 4
