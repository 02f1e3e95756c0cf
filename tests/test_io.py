"""Atomic writes never leave half files; JSONL stores resume and survive a torn last line;
`produce_ahead` produces the next item while the caller handles this one, results in order."""
from __future__ import annotations

import json
import threading

import pytest

from argen_ray.io import JsonlStore, atomic_path, atomic_write_text, produce_ahead, read_jsonl


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("original")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_jsonl_store_resumes_and_drops_torn_tail(tmp_path):
    path = tmp_path / "items.jsonl"
    store = JsonlStore(path, key="id")
    store.append({"id": "a", "v": 1})
    store.append({"id": "b", "v": 2})
    with open(path, "a") as fh:
        fh.write('{"id": "c", "v"')  # a run killed mid-append
    again = JsonlStore(path, key="id")
    assert "a" in again and "b" in again and "c" not in again
    again.append({"id": "c", "v": 3})
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b", "c"]


def test_jsonl_store_extend_appends_a_batch_and_checks_every_key(tmp_path):
    path = tmp_path / "items.jsonl"
    store = JsonlStore(path, key="id")
    store.extend([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    with pytest.raises(KeyError, match="lacks its key field 'id'"):
        store.extend([{"id": "c"}, {"v": 4}])
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]  # a bad batch writes nothing
    assert "a" in JsonlStore(path, key="id") and len(JsonlStore(path, key="id")) == 2


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_jsonl(path)


def test_produce_ahead_gives_results_in_item_order_and_the_next_item_is_produced_meanwhile():
    started = {k: threading.Event() for k in range(4)}

    def produce(k):
        started[k].set()
        return k * k

    seen = []
    for k, made in produce_ahead(range(4), produce):
        assert made == k * k
        if k + 1 < 4:  # the next item's production starts while this one is being handled
            assert started[k + 1].wait(5), f"item {k + 1} was not produced ahead"
        seen.append(k)
    assert seen == [0, 1, 2, 3]
    assert list(produce_ahead([], produce)) == []


def test_produce_ahead_raises_an_error_where_its_item_would_have_come():
    def produce(k):
        if k == 2:
            raise ValueError("bad item 2")
        return k

    got = []
    with pytest.raises(ValueError, match="bad item 2"):
        for k, _ in produce_ahead(range(4), produce):
            got.append(k)
    assert got == [0, 1]

