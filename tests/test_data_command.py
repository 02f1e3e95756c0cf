"""`argen-ray data` and `open_dataset(cfg)`: the summary a user reads, files it writes, errors."""
from __future__ import annotations

import json

import pytest

from argen_ray.cli import main
from argen_ray.config import load_config
from argen_ray.data import DatasetError, load_dataset, open_dataset
from data_layouts import snapshot, write_dfew


def _dataset(root):
    # Long-tailed: 10 of each common class, 2 surprise, 1 disgust, 1 fear; one bad row.
    train = {}
    for code, n in ((1, 10), (2, 10), (3, 10), (4, 10), (5, 2), (6, 1), (7, 1)):
        for _ in range(n):
            train[len(train) + 1] = code
    write_dfew(root, train=train, test={100: 3, 101: 6}, frames=2)
    with (root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv").open("a") as fh:
        fh.write("200,0\n")
    return root


def test_summary_tables_skips_and_outputs(tmp_path, capsys):
    root = _dataset(tmp_path / "DFEW")
    before = snapshot(root)
    code = main(["data", "--kind", "dfew", "--root", str(root), "--set", f"run_dir={tmp_path / 'run'}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "46 clips loaded; 1 skipped: 1 unknown label" in " ".join(out.split())  # caption may wrap
    assert "set_1.csv:46: unknown label" in out
    assert "scarce-class analysis" in out
    summary = json.loads((tmp_path / "run" / "data" / "summary.json").read_text())
    assert summary["scarce_classes"] == ["surprise", "disgust", "fear"]
    assert summary["class_counts"]["test"]["neutral"] == 1 and summary["class_counts"]["train"]["happy"] == 10
    assert summary["skipped_by_reason"] == {"unknown label": 1}
    assert (tmp_path / "run" / "data" / "class_counts.png").read_bytes()[:4] == b"\x89PNG"
    assert snapshot(root) == before


def test_config_override_of_scarce_classes_is_shown(tmp_path, capsys):
    root = _dataset(tmp_path / "DFEW")
    code = main(["data", "--kind", "dfew", "--root", str(root), "--set", f"run_dir={tmp_path / 'run'}",
                 "--set", "data.scarce_classes=[fear]", "--option", "verify=full"])
    assert code == 0
    assert "override from config: fear" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "data" / "summary.json").read_text())["scarce_classes"] == ["fear"]


def test_bad_root_is_a_one_line_error(tmp_path, capsys):
    code = main(["data", "--kind", "dfew", "--root", str(tmp_path / "nowhere"), "--set", f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("argen-ray data: error: dfew dataset root") and "Traceback" not in err


def test_open_dataset_resolves_kind_root_and_fold(tmp_path):
    root = _dataset(tmp_path / "DFEW")
    write_dfew(root, train={300: 7}, test={301: 1}, fold=2)
    cfg = load_config(None, ["data.kind=dfew", f"data.root={root}", "data.fold=2"])
    assert [r.clip_id for r in open_dataset(cfg).records] == ["00300", "00301"]
    with pytest.raises(DatasetError, match="data.root is required for data.kind=ferv39k"):
        open_dataset(load_config(None, ["data.kind=ferv39k"]))


def test_demo_kind_writes_the_demo_dataset_in_dfew_layout(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}", "data.demo.num_identities=5", "data.demo.clips_per_identity=3",
                             "data.demo.frames=4", "data.demo.size=48"])
    ds = open_dataset(cfg)
    out = tmp_path / "demo-data"
    again = load_dataset("dfew", out, fold=1, verify="full")  # what `argen-ray demo-data` promises
    assert [r.clip_id for r in again.records] == [r.clip_id for r in ds.records] and not again.skipped
    assert {r.num_frames for r in again.records} == {4}
    assert all(r.subject and r.au_csv and r.au_csv.is_file() for r in again.records)
    assert {r.split for r in again.records} == {"train", "test"}
