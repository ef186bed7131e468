"""Settling: objects that survive a collection leave the generations the collector walks."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from chat.memory import Settler, freeze_start_up, thaw


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.collect()
    yield
    gc.unfreeze()  # this process is pytest's: give it its collector back


def test_survivors_are_frozen_once_there_are_enough_and_garbage_is_collected_first() -> None:
    settler = Settler(limit=5_000)
    settler.settle()  # pytest's own objects, if there are that many
    kept = [Node() for _ in range(6_000)]
    doomed = Node()
    doomed.peer = doomed  # a cycle: only the collector can free it
    gone = weakref.ref(doomed)
    del doomed
    frozen = gc.get_freeze_count()
    assert settler.settle()
    assert gone() is None  # collected, not frozen with the survivors
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert len(gc.get_objects()) < 5_000  # the collector walks none of them from now on
    assert not settler.settle()  # nothing new to settle


def test_objects_are_counted_once_many_more_were_made_than_freed_not_at_every_look() -> None:
    settler = Settler(limit=5_000, interval=600, longest=3600)
    settler.settle()
    assert not settler.due(time.monotonic())  # nothing new: no count until the longest wait
    kept = [Node() for _ in range(3_000)]  # half the limit, and then some
    assert settler.due(time.monotonic())
    assert not settler.settle() and len(kept) == 3_000  # not enough to settle yet
    assert not settler.due(time.monotonic())


def test_objects_are_counted_at_least_every_so_often_whatever_the_counters_say() -> None:
    settler = Settler(limit=5_000, interval=30, longest=60)
    settler.settle()
    assert not settler.due(time.monotonic())
    assert settler.due(time.monotonic() + 61)


def test_what_survives_a_full_collection_after_start_up_is_frozen_with_it() -> None:
    freeze_start_up()
    try:
        kept = [Node() for _ in range(6_000)]
        doomed = Node()
        doomed.peer = doomed
        gone = weakref.ref(doomed)
        del doomed
        frozen = gc.get_freeze_count()
        gc.collect()  # as the collector's own full collections do
        assert gone() is None
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert len(gc.get_objects()) < 5_000  # the next one walks none of them again
    finally:
        thaw()
    assert gc.get_freeze_count() == 0
