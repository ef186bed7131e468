"""What a stream keeps of who is typing and viewing, and when it forgets it."""

from __future__ import annotations

from chat.signals import (
    TYPING_REFRESH,
    TYPING_RELAY,
    TYPING_TTL,
    VIEWING_TTL,
    Awareness,
    Relay,
    Signal,
)


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


def test_the_relay_passes_starts_at_once_and_a_refresh_only_once_per_relay_period() -> None:
    relay = Relay(every=TYPING_RELAY)
    note = Signal(1, 1, "typing", "note", "Alex", agent_id=7)
    assert relay.passes(typing(1), refresh=False, now=0.0)  # a start
    assert not relay.passes(typing(1), refresh=True, now=2.0)  # the streams still show it
    assert relay.passes(typing(2), refresh=True, now=2.0)  # nothing of them went out here
    assert relay.passes(typing(1), refresh=False, now=3.0)  # typing again after a send
    assert not relay.passes(typing(1), refresh=True, now=3.0 + TYPING_RELAY - 0.1)
    assert relay.passes(typing(1), refresh=True, now=3.0 + TYPING_RELAY)
    assert relay.passes(note, refresh=True, now=9.0)  # a reply turned into a note is news
    assert relay.passes(Signal(1, 1, "stopped", "visitor", "Maria"), refresh=True, now=9.1)
    assert TYPING_RELAY + TYPING_REFRESH < TYPING_TTL  # a passed refresh always comes in time
