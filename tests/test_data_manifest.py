"""Manifest adapter: a CSV `path,label[,subject,split]` with label names or canonical ints."""
from __future__ import annotations

import pytest

from argen_ray.data import DatasetError, load_dataset
from argen_ray.data.video import write_mp4
from data_layouts import write_frames

import numpy as np


def test_names_aliases_and_ints(tmp_path):
    write_frames(tmp_path / "clips" / "a", 3)
    write_mp4(tmp_path / "clips" / "b.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    write_frames(tmp_path / "clips" / "c", 2)
    (tmp_path / "manifest.csv").write_text(
        "path,label,subject,split\n"
        "clips/a,Anger,p1,train\n"
        "clips/b.mp4,4,p2,test\n"
        f"{tmp_path / 'clips' / 'c'},sadness,,\n")
    ds = load_dataset("manifest", tmp_path)
    assert [(r.emotion, r.subject, r.split) for r in ds.records] == [
        ("angry", "p1", "train"), ("surprise", "p2", "test"), ("sad", None, "train")]
    assert ds.records[1].source == tmp_path / "clips" / "b.mp4"
    assert ds.records[1].num_frames is None  # quick check does not decode videos
    full = load_dataset("manifest", tmp_path / "manifest.csv", verify="full")
    assert full.records[1].num_frames == 2


def test_header_must_name_path_and_label(tmp_path):
    (tmp_path / "m.csv").write_text("file,emotion\nx,happy\n")
    with pytest.raises(DatasetError, match=r"m.csv:1: header must name columns path,label.*missing path, label"):
        load_dataset("manifest", tmp_path / "m.csv")
