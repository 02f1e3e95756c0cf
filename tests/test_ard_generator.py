"""The generator interface's helpers: `generate_ahead` runs the next item's generation while the
caller handles the current one, and still gives the plain loop's results in order."""
from __future__ import annotations

import threading

import pytest

from argen_ray.ard.generator import generate_ahead


def test_results_come_in_item_order_and_the_next_item_is_produced_meanwhile():
    started = {k: threading.Event() for k in range(4)}

    def produce(k):
        started[k].set()
        return k * k

    seen = []
    for k, made in generate_ahead(range(4), produce):
        assert made == k * k
        if k + 1 < 4:  # the next item's production starts while this one is being handled
            assert started[k + 1].wait(5), f"item {k + 1} was not produced ahead"
        seen.append(k)
    assert seen == [0, 1, 2, 3]
    assert list(generate_ahead([], produce)) == []


def test_an_error_is_raised_where_its_item_would_have_come():
    def produce(k):
        if k == 2:
            raise ValueError("bad item 2")
        return k

    got = []
    with pytest.raises(ValueError, match="bad item 2"):
        for k, _ in generate_ahead(range(4), produce):
            got.append(k)
    assert got == [0, 1]

