"""Freezing the startup heap keeps what is alive and leaves no garbage behind."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from wamesh_kit.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's own heap stays collectable


def test_garbage_is_collected_first_and_the_living_are_frozen(thawed: None) -> None:
    cycle_a, cycle_b = Node(), Node()
    cycle_a.partner, cycle_b.partner = cycle_b, cycle_a
    garbage = weakref.ref(cycle_a)
    del cycle_a, cycle_b
    kept = Node()

    freeze_startup_heap()

    assert garbage() is None  # a cycle frozen uncollected would never be freed
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(kept)
    assert not any(obj is kept for obj in gc.get_objects())  # out of every generation
