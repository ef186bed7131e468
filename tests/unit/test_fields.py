"""Input is typed at the edge: what a handler gets is text PostgreSQL can store and numbers
that fit its columns, or the client gets a 422 naming the field."""

from __future__ import annotations

import re

import pytest

from chat.errors import Invalid
from chat.web.http import MAX_COUNT, MAX_ID, Fields, IdConvertor, _json_object


@pytest.mark.parametrize(("value", "problem"), [
    ("a\x00b", "NUL"),
    ("\ud800", "not valid Unicode"),  # a lone surrogate, as JSON's "\ud800" decodes
    ("x" * 11, "at most 10"),
    (42, "must be text"),
    (["a"], "must be text"),
    ({"a": 1}, "must be text"),
])
def test_text_that_postgresql_cannot_store_or_that_is_too_long_is_refused(
    value: object, problem: str,
) -> None:
    with pytest.raises(Invalid, match=problem) as refused:
        Fields({"name": value}).text("name", max_length=10)
    assert refused.value.field == "name"


def test_text_is_returned_as_sent_and_absent_fields_take_their_default() -> None:
    fields = Fields({"body": "  héllo 👋 ", "empty": ""})
    assert fields.text("body") == "  héllo 👋 "
    assert fields.text("missing") == "" and fields.text("missing", default="x") == "x"
    assert fields.optional_text("empty") is None and fields.optional_text("missing") is None
    assert "body" in fields and "missing" not in fields


@pytest.mark.parametrize("value", ["²", "\u0661\u0662", "1e3", "-1", "0x10", " 1", "1\n", "", "1.0",
                                   True, 1.5, "9" * 20])
def test_only_plain_ascii_whole_numbers_count(value: object) -> None:
    if value == "":
        assert Fields({"count": value}).number("count") is None
        return
    with pytest.raises(Invalid) as refused:
        Fields({"count": value}).number("count")
    assert refused.value.field == "count"


def test_numbers_must_fit_their_column() -> None:
    assert Fields({"id": str(MAX_ID)}).number("id") == MAX_ID
    with pytest.raises(Invalid, match="between 0 and"):
        Fields({"id": str(MAX_ID + 1)}).number("id")
    assert Fields({"count": MAX_COUNT}).number("count", maximum=MAX_COUNT) == MAX_COUNT
    with pytest.raises(Invalid):
        Fields({"count": MAX_COUNT + 1}).number("count", maximum=MAX_COUNT)
    assert Fields({"after": "42"}).number("after") == 42
    assert Fields({}).number("after") is None


@pytest.mark.parametrize(("value", "flag"), [
    ("1", True), ("true", True), ("on", True), ("YES", True), (True, True),
    ("0", False), ("off", False), ("", False), (False, False), (1, False), (None, False),
])
def test_one_rule_for_checkboxes_and_switches(value: object, flag: bool) -> None:
    assert Fields({"note": value}).flag("note") is flag


def test_json_bodies_must_be_one_flat_enough_object() -> None:
    assert _json_object(b'{"body": "hi"}') == {"body": "hi"}
    assert _json_object(b"") == {}
    for body, problem in [(b"[1]", "must be a JSON object"), (b"{", "not valid JSON"),
                          (b"\xff", "not valid JSON"),
                          (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")]:
        with pytest.raises(Invalid, match=problem):
            _json_object(body)


def test_route_ids_beyond_bigint_do_not_match() -> None:
    pattern = re.compile(IdConvertor.regex)
    assert pattern.fullmatch("9" * 18)
    assert not pattern.fullmatch("9" * 19)  # may exceed bigint: the route answers 404
    assert not pattern.fullmatch("\u0661")  # ARABIC-INDIC DIGIT ONE


def test_a_choice_is_one_of_its_options_or_a_422_that_lists_them() -> None:
    levels = ("all", "mine", "none")
    assert Fields({"alerts": "mine"}).choice("alerts", levels) == "mine"
    assert Fields({}).choice("tab", levels, default="all") == "all"
    with pytest.raises(Invalid, match=r"^alerts must be one of all, mine, none\.$"):
        Fields({"alerts": "loud"}).choice("alerts", levels)
    with pytest.raises(Invalid, match=r"^alerts must be one of"):
        Fields({}).choice("alerts", levels)  # absent, with no default
