"""What a stream keeps of who is typing and viewing, and when it forgets it."""

from __future__ import annotations

from chat.signals import TYPING_TTL, VIEWING_TTL, Awareness, Signal


def typing(conversation_id: int) -> Signal:
    return Signal(conversation_id, 1, "typing", "visitor", "Maria")


def test_a_refresh_postpones_the_expiry_and_only_the_stale_one_goes() -> None:
    aware = Awareness()
    aware.heard(typing(1), now=0.0)
    aware.heard(typing(2), now=1.0)
    assert aware.next_expiry() == TYPING_TTL
    aware.heard(typing(1), now=5.0)  # still typing: the first expiry no longer counts
    assert aware.next_expiry() == 1.0 + TYPING_TTL
    assert aware.expire(TYPING_TTL + 0.5) == []  # nobody's time was up
    assert aware.expire(1.0 + TYPING_TTL) == [2]
    assert not aware.knows(2) and aware.of(1)[0].typing
    assert aware.next_expiry() == 5.0 + TYPING_TTL
    assert aware.expire(5.0 + TYPING_TTL) == [1]
    assert aware.next_expiry() is None


def test_someone_who_stopped_or_left_has_no_expiry_left_to_wake_for() -> None:
    aware = Awareness()
    aware.heard(typing(1), now=0.0)
    aware.heard(Signal(1, 1, "stopped", "visitor", "Maria"), now=1.0)
    assert aware.next_expiry() is None
    aware.heard(Signal(3, 1, "viewing", "agent", "Alex", agent_id=7), now=2.0)
    aware.heard(Signal(3, 1, "left", "agent", "Alex", agent_id=7), now=3.0)
    assert aware.next_expiry() is None
    assert aware.expire(2.0 + VIEWING_TTL) == []


def test_a_page_that_expires_leaves_when_it_was_last_seen() -> None:
    aware = Awareness()
    aware.heard(Signal(4, 1, "here", "visitor", "Maria", at=1_700_000_000.0, page="/p"),
                now=0.0)
    assert aware.expire(VIEWING_TTL) == [4]
    assert aware.left_at(4) == 1_700_000_000.0
