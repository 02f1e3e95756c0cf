"""DFEW adapter: the real DFEW layout, its 1-based labels, folds, frame/video sources, extras."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.data import EMOTIONS, DatasetError, load_dataset
from argen_ray.data.video import read_video, write_mp4
from data_layouts import write_dfew, write_frames

# DFEW's documented single-label codes (EmoLabel_DataSplit README): 1 happy ... 7 fear.
DFEW_DOCUMENTED = {1: "happy", 2: "sad", 3: "neutral", 4: "angry", 5: "surprise", 6: "disgust", 7: "fear"}


def test_labels_follow_dfew_documentation(tmp_path):
    write_dfew(tmp_path, train={i: code for i, code in enumerate(DFEW_DOCUMENTED, 1)}, test={100: 7})
    ds = load_dataset("dfew", tmp_path, fold=1)
    by_id = {r.clip_id: r for r in ds.split("train")}
    for vid, name in zip(range(1, 8), DFEW_DOCUMENTED.values()):
        rec = by_id[f"{vid:05d}"]
        assert rec.emotion == name
        assert rec.label == EMOTIONS.index(name) == vid - 1  # canonical = DFEW code - 1
    assert [r.clip_id for r in ds.split("test")] == ["00100"]
    assert ds.skipped == []


def test_fold_selects_its_split_files(tmp_path):
    write_dfew(tmp_path, train={1: 1, 2: 5}, test={3: 6}, fold=1)
    write_dfew(tmp_path, train={4: 2}, test={5: 7, 6: 3}, fold=3)
    ds = load_dataset("dfew", tmp_path, fold=3)
    assert sorted(r.clip_id for r in ds.records) == ["00004", "00005", "00006"]
    assert {r.fold for r in ds.records} == {3}
    assert [r.split for r in ds.records] == ["train", "test", "test"]
    with pytest.raises(DatasetError, match="fold must be 1..5"):
        load_dataset("dfew", tmp_path, fold=6)


def test_frame_directories_are_the_source_with_their_frame_count(tmp_path):
    write_dfew(tmp_path, train={12: 3}, test={13: 1}, frames=5, header=False)
    rec = load_dataset("dfew", tmp_path).split("train")[0]
    assert rec.source == tmp_path / "Clip" / "clip_224x224" / "00012"
    assert rec.num_frames == 5
    frames = read_video(rec.source)
    assert frames.shape == (5, 8, 8, 3)
    assert frames[:, 0, 0, 0].tolist() == [0, 10, 20, 30, 40]  # natural frame order


def test_original_videos_and_one_layout_for_the_whole_dataset(tmp_path):
    write_dfew(tmp_path, train={1: 3}, test={2: 4})
    original = tmp_path / "Clip" / "original"
    clip = np.zeros((3, 16, 16, 3), np.uint8)
    write_mp4(original / "2.mp4", clip)        # unpadded names occur in copies of DFEW
    write_mp4(original / "00001.mp4", clip)
    # auto picks the frame layout for every clip: a clip missing from it is reported missing,
    # never read from the videos instead (frames and videos must not mix within a dataset).
    for f in (tmp_path / "Clip" / "clip_224x224" / "00002").iterdir():
        f.unlink()
    (tmp_path / "Clip" / "clip_224x224" / "00002").rmdir()
    ds = load_dataset("dfew", tmp_path)
    assert [r.source for r in ds.records] == [tmp_path / "Clip" / "clip_224x224" / "00001"]
    assert [s.reason for s in ds.skipped] == ["missing file"] and "00002" in str(ds.skipped[0])
    ds = load_dataset("dfew", tmp_path, source="original")
    assert [r.source.name for r in ds.records] == ["00001.mp4", "2.mp4"]


def test_sixteen_frame_layout(tmp_path):
    (tmp_path / "EmoLabel_DataSplit" / "train(single-labeled)").mkdir(parents=True)
    (tmp_path / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv").write_text("video_name,label\n7,5\n")
    # DFEW's 16-frame copies name the frames 1.jpg ... 16.jpg: natural order, not string order.
    write_frames(tmp_path / "Clip" / "clip_224x224_16f" / "00007", 16, name="{}")
    ds = load_dataset("dfew", tmp_path, source="clip_224x224_16f")
    assert ds.records[0].num_frames == 16 and ds.records[0].emotion == "surprise"
    assert read_video(ds.records[0].source)[:, 0, 0, 0].tolist() == [min(255, 10 * i) for i in range(16)]
    # The missing test list is reported, not fatal.
    assert [s.reason for s in ds.skipped] == ["missing file"]


def test_auto_never_mixes_sixteen_frame_and_full_clips(tmp_path):
    write_dfew(tmp_path, train={1: 5, 2: 6}, test={3: 7}, layout="clip_224x224_16f", frames=16, frame_name="{}")
    write_frames(tmp_path / "Clip" / "clip_224x224" / "00002", 40)   # a stray full clip of one id
    ds = load_dataset("dfew", tmp_path)
    assert {r.source.parent.name for r in ds.records} == {"clip_224x224"}  # first layout present wins
    assert [r.clip_id for r in ds.records] == ["00002"] and ds.skip_counts() == {"missing file": 2}
    ds = load_dataset("dfew", tmp_path, source="clip_224x224_16f")
    assert {r.num_frames for r in ds.records} == {16} and len(ds) == 3


@pytest.mark.parametrize("layout", ["clip_224x16f", "clip_224x224_16f"])
def test_alternative_layouts_as_options(tmp_path, layout):
    # Copies with Clip/clip_224x16f and EmoLabel_DataSplit/{train,test}/ (no "(single-labeled)").
    write_dfew(tmp_path, train={1: 5, 2: 7}, test={3: 6}, layout=layout, labels="{split}", frames=16,
               frame_name="{}")
    for options in ({}, {"source": layout, "labels": "plain"}):
        ds = load_dataset("dfew", tmp_path, **options)
        assert [(r.clip_id, r.emotion, r.split) for r in ds.records] == [
            ("00001", "surprise", "train"), ("00002", "fear", "train"), ("00003", "disgust", "test")]
        assert {r.source.parent.name for r in ds.records} == {layout} and ds.skipped == []
    with pytest.raises(DatasetError, match="none of the split lists exist"):
        load_dataset("dfew", tmp_path, labels="single-labeled")
    with pytest.raises(DatasetError, match="labels='both' is not one of"):
        load_dataset("dfew", tmp_path, labels="both")


def test_subjects_and_openface_extras(tmp_path):
    write_dfew(tmp_path, train={1: 3, 2: 5}, test={3: 7})
    (tmp_path / "subjects.csv").write_text("video_name,subject\n00001,id_a\n2,id_b\n")
    (tmp_path / "OpenFace").mkdir()
    (tmp_path / "OpenFace" / "00001.csv").write_text("frame, AU01_r\n1, 0.0\n")
    ds = load_dataset("dfew", tmp_path)
    rec = {r.clip_id: r for r in ds.records}
    assert rec["00001"].subject == "id_a" and rec["00001"].au_csv == tmp_path / "OpenFace" / "00001.csv"
    assert rec["00002"].subject == "id_b" and rec["00002"].au_csv is None
    assert rec["00003"].subject is None
