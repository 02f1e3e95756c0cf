"""The demo dataset is learnable by the local preset's recognition model (issues 2, 12): the
preset's recognizer (MobileNetV2(frozen, ImageNet)_LSTM, only its head trained) with
`configs/local.yaml`'s recognition settings clearly beats chance on fold 1's held-out identities."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from argen_ray.config import load_config
from argen_ray.data import load_dataset
from argen_ray.data.demo import write_demo_dataset
from argen_ray.recognition.train import train_and_evaluate

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


@pytest.mark.slow
def test_the_local_recognition_preset_beats_chance_on_the_demo_dataset(tmp_path):
    cfg = load_config(LOCAL, [f"run_dir={tmp_path / 'run'}", "recognition.device=cpu"])
    demo = cfg.data.demo
    root = write_demo_dataset(tmp_path / "demo", seed=demo.seed, num_identities=demo.num_identities,
                              clips_per_identity=demo.clips_per_identity, frames=demo.frames, size=demo.size,
                              min_test_clips=demo.min_test_clips, workers=2)
    dataset = load_dataset("dfew", root, fold=1)
    train, test = dataset.split("train"), dataset.split("test")
    majority = max(Counter(r.label for r in test).values()) / len(test)

    row = train_and_evaluate(cfg.recognition.models[0], train, test, cfg.recognition, tmp_path / "recognition",
                             fold=1, variant="original", seed=cfg.seed, progress=False)

    history = row["history"]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], history  # it fits the training set
    # Always predicting the commonest test class scores `majority` (16/80 on fold 1). Float
    # reductions (thread counts) move a prediction or two between runs, so the bar is "beats the
    # majority baseline by at least two clips", not a fixed WAR.
    correct = round(row["war"] * len(test))
    assert correct >= round(majority * len(test)) + 2, (row["war"], majority, row["ar"])
    assert row["uar"] > 1 / 7, row["ar"]  # a uniform guess has UAR 1/7
    assert sum(r is not None and r > 0 for r in row["per_class_recall"]) >= 3, row["ar"]
