"""Original vs augmented recognition: only the training set changes, units resume, CK+ is zero-shot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from argen_ray.config import load_config
from argen_ray.data import load_dataset
from argen_ray.data.labels import EMOTIONS
from argen_ray.data.video import write_mp4
from argen_ray.io import read_jsonl
from argen_ray.recognition.clips import read_generated_clips
from argen_ray.recognition.models import RecognitionError
from argen_ray.recognition.protocols import compare_original_vs_augmented, leakage_free, run_protocol

from data_layouts import write_ckplus_sequence, write_dfew

FAST = ["recognition.epochs=1", "recognition.image_size=32", "recognition.num_segments=2",
        "recognition.batch_size=4", "recognition.hidden=16", "data.scarce_classes=[surprise,disgust,fear]"]


def _generated(run_dir: Path, rows: list[tuple[str, str, str | None]]) -> Path:
    """mp4 clips + manifest.jsonl as the generator writes them: (clip_id, emotion, subject)."""
    out = run_dir / "generated"
    lines = []
    for i, (clip_id, emotion, subject) in enumerate(rows):
        frames = np.full((6, 16, 16, 3), 40 * i, np.uint8)
        write_mp4(out / f"{clip_id}.mp4", frames)
        lines.append(json.dumps({"clip_id": clip_id, "path": f"{clip_id}.mp4", "emotion": emotion,
                                 "subject": subject, "nfe": 10}))
    lines.append(json.dumps({"clip_id": "broken", "path": "broken.mp4", "emotion": "fear", "ok": False}))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return out / "manifest.jsonl"


@pytest.fixture()
def dfew(tmp_path) -> Path:
    # DFEW labels are 1-based: 1 happy, 3 neutral, 5 surprise, 7 fear.
    return write_dfew(tmp_path / "DFEW", train={1: 1, 2: 3, 3: 1, 4: 3, 5: 5, 6: 7}, test={7: 1, 8: 3, 9: 5},
                      frames=4)


def test_only_the_training_set_changes_and_units_resume(tmp_path, dfew):
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", "data.kind=dfew", f"data.root={dfew}", *FAST])
    manifest = _generated(Path(cfg.run_dir), [("g1", "fear", "s9"), ("g2", "surprise", None), ("g3", "Disgust", None)])
    dataset = load_dataset("dfew", dfew, fold=1)
    result = compare_original_vs_augmented(cfg, dataset, manifest, progress=False)

    entry = result["models"]["Res18_LSTM"]
    orig, aug = entry["original"], entry["augmented"]
    assert orig["train_counts"] == [2, 0, 2, 0, 1, 0, 1]
    assert aug["train_counts"] == [2, 0, 2, 0, 2, 1, 2]  # + fear, surprise, disgust; the failed row left out
    assert orig["num_test"] == aug["num_test"] == 3      # the same, untouched test split
    assert set(entry["delta"]) == {"war", "uar", "ar"}
    assert entry["delta"]["war"] == pytest.approx(aug["war"] - orig["war"])
    assert result["scarce"] == ["surprise", "disgust", "fear"] and result["num_generated"] == 3
    # The original-only recognizer judged every generated clip; the filter is off: nothing dropped.
    judged = entry["recognizability"]["per_class"]
    assert {c: r["clips"] for c, r in judged.items()} == {"surprise": 1, "disgust": 1, "fear": 1}
    assert all(r["recall"] == r["recognized"] / r["clips"] for r in judged.values())
    assert entry["filter_dropped"] == {}

    # Rerun: finished units are read back, not retrained (checkpoints untouched).
    rec = Path(cfg.run_dir) / "recognition"
    stamps = {p: p.stat().st_mtime_ns for p in rec.glob("checkpoints/*.pt")}
    assert len(stamps) == 2 and not list(rec.glob("checkpoints/*.partial.pt"))
    again = compare_original_vs_augmented(cfg, dataset, manifest, progress=False)
    assert again["models"]["Res18_LSTM"]["augmented"]["war"] == aug["war"]
    assert {p: p.stat().st_mtime_ns for p in rec.glob("checkpoints/*.pt")} == stamps
    assert len(read_jsonl(rec / "results.jsonl")) == 2

    # Other generated clips (here: one fewer; likewise the filter turned on, or another setting): the
    # augmented unit's training set changed, so it trains again; the original's did not: read back.
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(line for line in lines if '"g3"' not in line) + "\n")
    third = compare_original_vs_augmented(cfg, dataset, manifest, progress=False)["models"]["Res18_LSTM"]
    assert third["augmented"]["train_counts"] == [2, 0, 2, 0, 2, 0, 2]  # the disgust clip is gone
    original_pt = next(p for p in stamps if "original" in p.name)
    assert original_pt.stat().st_mtime_ns == stamps[original_pt]


def test_protocol_summary_and_ckplus_zero_shot(tmp_path, dfew):
    run_dir = tmp_path / "run"
    cfg = load_config(None, [f"run_dir={run_dir}", "data.kind=dfew", f"data.root={dfew}", *FAST])
    result = run_protocol(cfg, None, progress=False)  # no generated clips: the original variant only
    assert result["protocol"] == "dfew-5fold" and result["folds"] == [1] and result["pairs"] == [[1, 0]]
    assert set(result["mean"]["Res18_LSTM"]) == {"original"}
    assert "verdict" not in result["study"]["Res18_LSTM"] and not (run_dir / "metrics").exists()
    saved = json.loads((run_dir / "recognition" / "results.json").read_text())
    assert saved["mean"]["Res18_LSTM"]["original"]["war"] == result["mean"]["Res18_LSTM"]["original"]["war"]

    ck = tmp_path / "CK+"
    for subject, code in (("S010", 5), ("S011", 7), ("S012", 4)):  # CK+ codes: 5 happy, 7 surprise, 4 fear
        write_ckplus_sequence(ck, subject, "001", frames=3, code=code)
    zs_cfg = load_config(None, [f"run_dir={tmp_path / 'ck-run'}", "data.kind=ckplus", f"data.root={ck}", *FAST,
                                f"recognition.zero_shot_from={run_dir / 'recognition'}"])
    zs = run_protocol(zs_cfg, None, progress=False)
    assert zs["protocol"] == "zero-shot" and zs["test_count"] == 3
    scores = zs["per_fold"][0]["models"]["Res18_LSTM_fold1"]["original"]
    assert scores["num_test"] == 3 and 0.0 <= scores["war"] <= 1.0

    no_source = load_config(None, [f"run_dir={tmp_path / 'ck2'}", "data.kind=ckplus", f"data.root={ck}", *FAST])
    with pytest.raises(RecognitionError, match="zero_shot_from"):
        run_protocol(no_source, None, progress=False)


def test_generated_manifest_problems_are_named(tmp_path):
    manifest = _generated(tmp_path, [("g1", "fear", None)])
    assert [r.clip_id for r in read_generated_clips(manifest.parent)] == ["gen/g1"]
    manifest.write_text(json.dumps({"clip_id": "x", "path": "g1.mp4", "emotion": "contempt"}) + "\n")
    with pytest.raises(RecognitionError, match=r"manifest.jsonl:1: unknown emotion label 'contempt'"):
        read_generated_clips(manifest)
    manifest.write_text(json.dumps({"clip_id": "x", "path": "gone.mp4", "emotion": "fear"}) + "\n")
    with pytest.raises(RecognitionError, match=r"manifest.jsonl:1: generated clip .*gone.mp4 does not exist"):
        read_generated_clips(manifest)
    manifest.write_text(json.dumps({"clip_id": "x", "emotion": "fear"}) + "\n")
    with pytest.raises(RecognitionError, match=r"manifest.jsonl:1: row lacks video"):
        read_generated_clips(manifest)
    with pytest.raises(RecognitionError, match="does not exist"):
        read_generated_clips(tmp_path / "nowhere.jsonl")


def test_generated_clips_of_test_subjects_are_dropped(tmp_path, dfew):
    from argen_ray.data.records import ClipRecord

    test = [ClipRecord("00007", tmp_path, 0, subject="s1", split="test")]
    gen = [ClipRecord("gen/a", tmp_path, 6, subject="s1"), ClipRecord("gen/b", tmp_path, 6, subject="s2"),
           ClipRecord("gen/c", tmp_path, 6, subject="00007"), ClipRecord("gen/d", tmp_path, 6)]
    kept, dropped = leakage_free(gen, test)
    assert [g.clip_id for g in kept] == ["gen/b", "gen/d"] and dropped == 2


def test_recognize_command_prints_the_table_and_names_a_missing_manifest(tmp_path, dfew, capsys):
    from argen_ray.cli import main

    run_dir = tmp_path / "run"
    config = tmp_path / "cfg.yaml"
    config.write_text(f"run_dir: {run_dir}\ndata:\n  kind: dfew\n  root: {dfew}\n")
    args = ["recognize", "--config", str(config), "--no-progress", *[x for s in FAST for x in ("--set", s)]]
    assert main(args + ["--generated", str(tmp_path / "missing")]) == 2
    assert "--generated" in capsys.readouterr().err
    _generated(run_dir, [("g1", "fear", None), ("g2", "fear", None)])  # found under <run_dir>/generated
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "augmented" in out and "AR-FE" in out
    assert (run_dir / "recognition" / "results.json").is_file()


def test_a_study_runs_every_seed_resumes_by_pair_and_the_filter_drops_what_the_recognizer_rejects(tmp_path, dfew):
    run_dir = tmp_path / "run"
    cfg = load_config(None, [f"run_dir={run_dir}", "data.kind=dfew", f"data.root={dfew}", *FAST,
                             "recognition.seeds=[0,1]", "recognition.filter_unrecognized=true"])
    manifest = _generated(run_dir, [("g1", "fear", None), ("g2", "fear", None), ("g3", "surprise", None)])
    result = run_protocol(cfg, manifest, progress=False)
    assert result["pairs"] == [[1, 0], [1, 1]] and [p["seed"] for p in result["per_fold"]] == [0, 1]
    study = result["study"]["Res18_LSTM"]
    assert study["delta"]["uar"]["n"] == 2 and study["verdict"]["text"]
    for pair in result["per_fold"]:
        entry = pair["models"]["Res18_LSTM"]
        judged = entry["recognizability"]["per_class"]
        added = np.subtract(entry["augmented"]["train_counts"], entry["original"]["train_counts"])
        for c, r in judged.items():  # only recognized clips reach the augmented training set
            assert added[EMOTIONS.index(c)] == r["recognized"]
            assert entry["filter_dropped"].get(c, 0) == r["clips"] - r["recognized"]
    saved = json.loads((run_dir / "metrics" / "recognizability.json").read_text())
    pooled = saved["models"]["Res18_LSTM"]["per_class"]
    assert pooled["fear"]["clips"] == 4 and saved["filter_unrecognized"] is True  # 2 clips x 2 pairs
    assert Path(study["plots"]["recall"]).read_bytes()[:4] == b"\x89PNG"
    # Rerun: every unit of both pairs is read back, nothing retrained.
    units = read_jsonl(run_dir / "recognition" / "results.jsonl")
    assert len(units) == 4 and len({u["unit"] for u in units}) == 4
    run_protocol(cfg, manifest, progress=False)
    assert len(read_jsonl(run_dir / "recognition" / "results.jsonl")) == 4


@pytest.mark.parametrize("filter_unrecognized", [False, True])
def test_a_study_in_two_worker_processes_gives_the_pairs_of_one_process(tmp_path, dfew, filter_unrecognized):
    # recognition.processes only spreads the work: the features are filled once, the units train
    # in spawned workers (with the filter, the augmented ones after every original one), and every
    # pair's scores and the shared results.jsonl match a serial run.
    def study(run_dir, processes):
        cfg = load_config(None, [f"run_dir={run_dir}", "data.kind=dfew", f"data.root={dfew}", *FAST,
                                 "recognition.models=[MobileNetV2Frozen_LSTM]", "recognition.seeds=[0,1]",
                                 f"recognition.processes={processes}",
                                 f"recognition.filter_unrecognized={str(filter_unrecognized).lower()}"])
        manifest = _generated(Path(run_dir), [("g1", "fear", None), ("g2", "surprise", None)])
        return run_protocol(cfg, manifest, progress=False)

    serial, parallel = study(tmp_path / "serial", 1), study(tmp_path / "parallel", 2)
    assert parallel["pairs"] == serial["pairs"] == [[1, 0], [1, 1]]
    for a, b in zip(serial["per_fold"], parallel["per_fold"]):
        for variant in ("original", "augmented"):
            x, y = a["models"]["MobileNetV2Frozen_LSTM"][variant], b["models"]["MobileNetV2Frozen_LSTM"][variant]
            assert (x["war"], x["uar"], x["train_counts"]) == (y["war"], y["uar"], y["train_counts"])
            assert x["history"][-1]["loss"] == pytest.approx(y["history"][-1]["loss"], rel=1e-5)
        assert a["models"]["MobileNetV2Frozen_LSTM"]["filter_dropped"] == b["models"]["MobileNetV2Frozen_LSTM"]["filter_dropped"]
    units = read_jsonl(tmp_path / "parallel" / "recognition" / "results.jsonl")
    assert sorted(u["unit"] for u in units) == sorted(u["unit"] for u in read_jsonl(
        tmp_path / "serial" / "recognition" / "results.jsonl")) and len(units) == 4
