"""DFER-CLIP annotation lists: `frame_dir num_frames label` with 0-based canonical labels."""
from __future__ import annotations

import pytest

from argen_ray.data import EMOTIONS, DatasetError, load_dataset
from data_layouts import write_frames


def test_absolute_paths_from_another_machine_are_rebased(tmp_path):
    root = tmp_path / "FERV39K"
    for rel in ("2_ClipsforFaceCrop/Action/Happy/0015", "2_ClipsforFaceCrop/Action/Fear/0005"):
        write_frames(root / rel, 4)
    ann = tmp_path / "FERV39K_train.txt"
    ann.write_text("/data/lab/datasets/FERV39K/2_ClipsforFaceCrop/Action/Happy/0015 4 0\n"
                   "/data/lab/datasets/FERV39K/2_ClipsforFaceCrop/Action/Fear/0005 4 6\n")
    ds = load_dataset("dferclip", root, train_list=str(ann))
    assert [r.clip_id for r in ds.records] == ["2_ClipsforFaceCrop/Action/Happy/0015",
                                            "2_ClipsforFaceCrop/Action/Fear/0005"]
    assert [r.label for r in ds.records] == [EMOTIONS.index("happy"), EMOTIONS.index("fear")]
    assert ds.records[0].source == root / "2_ClipsforFaceCrop/Action/Happy/0015"


def test_relative_paths_labels_and_frame_counts(tmp_path):
    for vid in ("02522", "02536"):
        write_frames(tmp_path / vid, 6)
    (tmp_path / "train.txt").write_text("02522 66 5\n")
    (tmp_path / "test.txt").write_text("02536 65 2\n")
    ds = load_dataset("dferclip", tmp_path, train_list="train.txt", test_list="test.txt")
    assert [(r.clip_id, r.split, r.emotion) for r in ds.records] == [
        ("02522", "train", "disgust"), ("02536", "test", "neutral")]
    assert ds.records[0].num_frames == 6  # counted on disk, not the annotation's 66


def test_needs_an_annotation_file(tmp_path):
    with pytest.raises(DatasetError, match="train_list"):
        load_dataset("dferclip", tmp_path)
