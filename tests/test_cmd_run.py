"""`argen-ray run`: the end-to-end job produces the report with per-class recall of the scarce
classes before and after augmentation, under one MLflow parent run, and a rerun resumes."""
from __future__ import annotations

import json
import re

import pytest

from train_setup import cli

pytestmark = pytest.mark.slow

# The smallest settings that still run every stage for real.
SMALL = ["data.demo.num_identities=5", "data.demo.clips_per_identity=3", "data.demo.frames=8", "data.demo.size=64",
         "data.demo.min_test_clips=0", "recognition.folds=[1]",
         "asi.identity.size_min=32", "ray.num_cpus=4", "reward.num_scorers=1", "generator.num_frames=8",
         "train.progress=false", "train.iterations=2", "train.batch_size=4", "train.eval_states=2", "train.eval_seeds=1",
         "recognition.epochs=1", "recognition.num_segments=2", "recognition.image_size=32", "recognition.hidden=16",
         "recognition.augment.per_class={surprise: 2, disgust: 2, fear: 2}", "recognition.diversity_image_size=32", "recognition.diversity_frames=2"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    sets = [x for o in [f"run_dir={run_dir}", *SMALL] for x in ("--set", o)]
    done = cli("run", "--config", "configs/local.yaml", "--no-progress", *sets, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_dir, sets, done


def test_report_shows_scarce_class_recall_before_and_after_augmentation(finished_run):
    run_dir, _, done = finished_run
    page = (run_dir / "report" / "index.html").read_text()
    for scarce in ("surprise", "disgust", "fear"):
        assert f"AR-{scarce}" in page
    assert re.search(r"<td class=\"l\">original</td>", page) and re.search(r"<td class=\"l\">augmented</td>", page)
    results = json.loads((run_dir / "recognition" / "results.json").read_text())
    mean = results["mean"]["MobileNetV2Frozen_LSTM"]
    assert set(mean) == {"original", "augmented"} and results["per_fold"][0]["num_generated"] > 0
    # Every image the page shows was copied next to it (reward curve, confusion matrices, GIFs).
    images = re.findall(r'<img src="([^"]+)"', page)
    assert any(i.endswith(".gif") for i in images) and any("reward_curve" in i for i in images)
    assert any("confusion" in i for i in images)
    assert all((run_dir / "report" / i).is_file() for i in images)
    generation = json.loads((run_dir / "metrics" / "generation.json").read_text())
    assert generation["fvd"] >= 0 and generation["num_generated"] == results["per_fold"][0]["num_generated"]
    assert "report:" in done.stdout
    # Augmentation amounts (DESIGN 2.5) and the generated clips' validity are in the report.
    augmentation = json.loads((run_dir / "generated" / "augmentation.json").read_text())
    assert augmentation["amounts"] == {"surprise": 2, "disgust": 2, "fear": 2}
    assert "Augmentation amounts" in page and "Generated-clip validity" in page
    assert (run_dir / "metrics" / "validity.json").is_file() and (run_dir / "data" / "dynamics.json").is_file()


def test_one_mlflow_parent_run_holds_the_training_run(finished_run):
    import mlflow

    run_dir, _, _ = finished_run
    state = json.loads((run_dir / "run.json").read_text())
    client = mlflow.MlflowClient(f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    parent = client.get_run(state["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert {"MobileNetV2Frozen_LSTM.original.uar", "MobileNetV2Frozen_LSTM.augmented.uar", "fvd",
            "stage_seconds_train"} <= set(parent.data.metrics)
    child = client.get_run(state["stages"]["train"]["result"]["mlflow_run_id"])
    assert child.data.tags.get("mlflow.parentRunId") == parent.info.run_id


def test_rerun_skips_finished_stages_and_from_redoes_the_later_ones(finished_run):
    run_dir, sets, _ = finished_run
    before = json.loads((run_dir / "run.json").read_text())
    done = cli("run", "--config", "configs/local.yaml", "--no-progress", *sets)
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in ("data", "prompts", "train", "generate", "recognition", "metrics"):
        assert f"{stage}: done in an earlier run" in done.stdout
    after = json.loads((run_dir / "run.json").read_text())
    assert after["stages"]["train"] == before["stages"]["train"]
    assert after["mlflow_run_id"] == before["mlflow_run_id"]

    done = cli("run", "--config", "configs/local.yaml", "--no-progress", "--from", "metrics", *sets)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "recognition: done in an earlier run" in done.stdout and "stage 6/7: metrics" in done.stdout
    redone = json.loads((run_dir / "run.json").read_text())
    assert redone["stages"]["metrics"]["finished"] > before["stages"]["metrics"]["finished"]

    # A changed setting redoes the first stage that reads it and every later one; earlier stages
    # stay done, and the generate stage reuses its clips (their requests did not change).
    changed = [*sets, "--set", "recognition.epochs=2"]
    done = cli("run", "--config", "configs/local.yaml", "--no-progress", *changed)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the settings stage generate reads changed" in done.stdout
    assert "train: done in an earlier run" in done.stdout and "stage 4/7: generate" in done.stdout
    assert "clips already in" in done.stdout and "made again" not in done.stdout
    again = json.loads((run_dir / "run.json").read_text())
    assert again["stages"]["train"] == before["stages"]["train"]
    assert all(len(row["history"]) == 2 for row in _units(run_dir))  # every unit trained anew, 2 epochs


def _units(run_dir):
    units = {}
    for line in (run_dir / "recognition" / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        units[row["unit"]] = row  # the last row of a unit is its current one
    return list(units.values())


def test_a_broken_run_state_is_a_clear_error(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{not json")
    done = cli("run", "--set", f"run_dir={run_dir}", "--set", "tracking.enabled=false")
    assert done.returncode == 2
    assert "run.json: unreadable" in done.stderr and "Traceback" not in done.stderr
