"""Bad input: every unusable item is skipped with its file, line and reason; nothing usable left
is an error; a summary counts the skips; nothing is ever written inside a dataset root."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.data import DatasetError, load_dataset
from argen_ray.data.video import write_mp4
from argen_ray.errors import ArgenError
from data_layouts import snapshot, write_ckplus_sequence, write_dfew, write_frames


def _dfew_with_every_problem(root):
    write_dfew(root, train={1: 3, 2: 5}, test={})
    train_csv = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    clips = root / "Clip" / "clip_224x224"
    (clips / "00007").mkdir()                                                    # empty clip
    write_frames(clips / "00008", 2)
    (clips / "00008" / "00001.jpg").write_bytes(b"\x00garbage")                  # unreadable first frame
    with train_csv.open("a") as fh:
        fh.write("3,8\n"            # line 4: DFEW has no label 8
                 "abc,3\n"          # line 5: not a clip number
                 "5\n"              # line 6: one field
                 "6,2\n"            # line 7: no frames on disk
                 "7,2\n"            # line 8: empty frame directory
                 "8,2\n"            # line 9: unreadable frame
                 "1,1\n")           # line 10: listed twice
    return train_csv


def test_each_problem_is_skipped_with_file_line_and_reason(tmp_path):
    train_csv = _dfew_with_every_problem(tmp_path)
    ds = load_dataset("dfew", tmp_path)
    assert [r.clip_id for r in ds.records] == ["00001", "00002"]
    got = [(s.path, s.line, s.reason) for s in ds.skipped]
    assert got == [
        (train_csv, 4, "unknown label"), (train_csv, 5, "malformed row"), (train_csv, 6, "malformed row"),
        (train_csv, 7, "missing file"), (train_csv, 8, "empty clip"), (train_csv, 9, "unreadable file"),
        (train_csv, 10, "duplicate clip")]
    assert "00006" in ds.skipped[3].detail and "00001.jpg" in ds.skipped[5].detail
    assert str(ds.skipped[0]).startswith(f"{train_csv}:4: unknown label")
    assert ds.skip_counts() == {"malformed row": 2, "unknown label": 1, "missing file": 1, "empty clip": 1,
                                "unreadable file": 1, "duplicate clip": 1}
    assert ds.summary_table().caption == ("2 clips loaded; 7 skipped: 2 malformed row, 1 unknown label, "
                                          "1 missing file, 1 empty clip, 1 unreadable file, 1 duplicate clip")


def test_nothing_usable_left_is_an_error_listing_the_skips(tmp_path):
    write_dfew(tmp_path, train={1: 9, 2: 0}, test={3: 1})
    (tmp_path / "Clip" / "clip_224x224" / "00003" / "00001.jpg").unlink()
    for f in (tmp_path / "Clip" / "clip_224x224" / "00003").iterdir():
        f.unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("dfew", tmp_path)
    message = str(info.value)
    assert message.startswith(f"no usable clips in dfew dataset at {tmp_path}; skipped 3:")
    assert "set_1.csv:2: unknown label" in message and "empty clip" in message


@pytest.mark.parametrize("kind, setup, options, message", [
    ("dfew", None, {}, "dataset root .* does not exist"),
    ("dfew", "file", {}, "is not a directory"),
    ("youtube", "dir", {}, "unknown dataset kind 'youtube'"),
    ("dfew", "dir", {"folds": 2}, "unknown option\\(s\\) folds for dataset kind 'dfew'; accepted: fold, source, labels, verify"),
    ("dfew", "dir", {}, "none of the split lists exist"),
    ("dfew", "dir", {"verify": "deep"}, "verify='deep' is not one of quick, full"),
    ("dfew", "dir", {"source": "clip_112"}, "source='clip_112' is not one of"),
    ("ckplus", "dir", {"contempt_as": "smug"}, "unknown emotion label 'smug'"),
])
def test_unusable_roots_and_options_are_clear_errors(tmp_path, kind, setup, options, message):
    root = tmp_path / "data"
    if setup == "dir":
        (root / "cohn-kanade-images").mkdir(parents=True)
    elif setup == "file":
        root.write_text("x")
    with pytest.raises(ArgenError, match=message):
        load_dataset(kind, root, **options)


def test_label_file_that_is_not_text_names_the_file(tmp_path):
    write_dfew(tmp_path, train={1: 1}, test={})
    bad = tmp_path / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    bad.write_bytes(b"video_name,label\n\xff\xfe\x00\x81,3\n")
    with pytest.raises(DatasetError, match=r"set_1.csv: not a UTF-8 text file"):
        load_dataset("dfew", tmp_path)


def test_ferv39k_bad_rows(tmp_path):
    lists = tmp_path / "4_setups" / "All_scenes"
    lists.mkdir(parents=True)
    write_frames(tmp_path / "2_ClipsforFaceCrop" / "Action" / "Fear" / "0001", 2)
    (lists / "train_All.csv").write_text("Action/Fear/0001 Fear\nAction/Contempt/0002 Contempt\n"
                                         "Action/Fear/0003\nAction/Sad/0004 Sad\n")
    ds = load_dataset("ferv39k", tmp_path)
    assert [r.clip_id for r in ds.records] == ["Action/Fear/0001"]
    assert [(s.line, s.reason) for s in ds.skipped] == [
        (None, "missing file"), (2, "unknown label"), (3, "malformed row"), (4, "missing file")]
    assert ds.skipped[0].path == lists / "test_All.csv"  # the absent test list is reported


def test_ckplus_bad_label_files(tmp_path):
    write_ckplus_sequence(tmp_path, "S010", "001", code=5.0)
    write_ckplus_sequence(tmp_path, "S010", "002", code="not a number\n")
    write_ckplus_sequence(tmp_path, "S010", "003", code=9.0)
    ds = load_dataset("ckplus", tmp_path)
    assert [r.emotion for r in ds.records] == ["happy"]
    assert [(s.path.parent.name, s.reason) for s in ds.skipped] == [("002", "unknown label"), ("003", "unknown label")]


def test_dferclip_and_manifest_bad_rows(tmp_path):
    write_frames(tmp_path / "00001", 3)
    (tmp_path / "train.txt").write_text("00001 3 0\n00002 3 7\n00003 three 1\n00004 3 2\n")
    ds = load_dataset("dferclip", tmp_path, train_list="train.txt")
    assert [(s.line, s.reason) for s in ds.skipped] == [(2, "unknown label"), (3, "malformed row"), (4, "missing file")]

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "manifest.csv").write_text(
        "path,label,split,fold\n00001,fear,train,1\n00001,fear\n,sad,train,\n00001,contempt,train,\n"
        "00001,happy,train,one\nempty.mp4,happy,test,\n")
    ds = load_dataset("manifest", tmp_path)
    assert [(r.emotion, r.fold) for r in ds.records] == [("fear", 1)]
    assert [(s.line, s.reason) for s in ds.skipped] == [
        (3, "malformed row"), (4, "malformed row"), (5, "unknown label"), (6, "malformed row"), (7, "empty clip")]


def test_nothing_is_written_inside_a_dataset_root(tmp_path):
    dfew, ck, man = tmp_path / "dfew", tmp_path / "ck", tmp_path / "man"
    _dfew_with_every_problem(dfew)
    write_ckplus_sequence(ck, "S001", "001", code=7.0)
    write_ckplus_sequence(ck, "S001", "002")
    write_mp4(man / "a.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    (man / "manifest.csv").write_text("path,label\na.mp4,fear\n")
    for kind, root, opts in (("dfew", dfew, {}), ("dfew", dfew, {"verify": "full"}), ("ckplus", ck, {}),
                             ("manifest", man, {"verify": "full"})):
        before = snapshot(root)
        load_dataset(kind, root, **opts)
        assert snapshot(root) == before, f"{kind} loader wrote inside {root}"
