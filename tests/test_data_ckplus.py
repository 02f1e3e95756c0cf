"""CK+ adapter: sequences with per-sequence emotion files, unlabeled ones reported, contempt excluded."""
from __future__ import annotations

import pytest

from argen_ray.data import DatasetError, load_dataset
from data_layouts import write_ckplus_sequence

# CK+'s documented codes (Lucey et al. 2010): 0 neutral 1 anger 2 contempt 3 disgust 4 fear
# 5 happy 6 sadness 7 surprise.
CKPLUS_DOCUMENTED = {0: "neutral", 1: "angry", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise"}


def test_codes_follow_ckplus_documentation(tmp_path):
    for i, code in enumerate(CKPLUS_DOCUMENTED):
        write_ckplus_sequence(tmp_path, f"S{100 + i:03d}", "001", code=float(code))
    ds = load_dataset("ckplus", tmp_path)
    got = {r.clip_id: r.emotion for r in ds.records}
    assert got == {f"S{100 + i:03d}_001": name for i, name in enumerate(CKPLUS_DOCUMENTED.values())}
    rec = ds.records[0]
    assert rec.subject == "S100" and rec.split == "test" and rec.num_frames == 3
    assert rec.source == tmp_path / "cohn-kanade-images" / "S100" / "001"


def test_unlabeled_sequences_are_reported_not_guessed(tmp_path):
    write_ckplus_sequence(tmp_path, "S005", "001", code=3.0)
    unlabeled = write_ckplus_sequence(tmp_path, "S005", "002", code=None)
    ds = load_dataset("ckplus", tmp_path)
    assert [r.clip_id for r in ds.records] == ["S005_001"]
    assert [(s.path, s.reason) for s in ds.skipped] == [(unlabeled, "no label file")]


def test_contempt_excluded_by_default_or_mapped_on_request(tmp_path):
    write_ckplus_sequence(tmp_path, "S010", "004", code=2.0)
    write_ckplus_sequence(tmp_path, "S011", "001", code=7.0)
    ds = load_dataset("ckplus", tmp_path)
    assert [r.emotion for r in ds.records] == ["surprise"]
    assert [s.reason for s in ds.skipped] == ["excluded class"]
    assert ds.skipped[0].path.name == "S010_004_00000003_emotion.txt"
    ds = load_dataset("ckplus", tmp_path, contempt_as="disgust", split="train")
    assert [(r.emotion, r.split) for r in ds.records] == [("disgust", "train"), ("surprise", "train")]


def test_missing_image_tree_is_an_error(tmp_path):
    (tmp_path / "Emotion").mkdir()
    with pytest.raises(DatasetError, match="cohn-kanade-images"):
        load_dataset("ckplus", tmp_path)
