"""Atomic writes never leave half files; JSONL stores resume and survive a torn last line."""
from __future__ import annotations

import json

import pytest

from argen_ray.io import JsonlStore, atomic_path, atomic_write_text, read_jsonl


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


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_jsonl(path)
