"""The training loop: warm-up + per-step cosine schedule, and resume from the partial checkpoint
only when it was saved with the same settings and clips."""
from __future__ import annotations

import pytest
import torch

from argen_ray.config import load_config
from argen_ray.data import load_dataset
from argen_ray.recognition import train as train_module
from argen_ray.recognition.train import lr_factor, train_model

from data_layouts import write_dfew

TINY = ["recognition.epochs=3", "recognition.image_size=32", "recognition.num_segments=2", "recognition.batch_size=2",
        "recognition.hidden=16", "recognition.lr=0.01", "recognition.warmup_epochs=1"]


def test_lr_warms_up_linearly_then_follows_a_cosine_to_zero():
    total, warmup = 20, 4
    factors = [lr_factor(s, total, warmup) for s in range(total + 1)]
    assert factors[:warmup] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[warmup + 8] == pytest.approx(0.5)  # half way through the decay
    assert factors[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:]))
    assert lr_factor(0, 10, 0) == 1.0


@pytest.fixture()
def records(tmp_path):
    root = write_dfew(tmp_path / "DFEW", train={1: 1, 2: 3, 3: 5, 4: 7, 5: 1}, test={6: 1}, frames=4)
    return load_dataset("dfew", root, fold=1).split("train")


def test_training_drops_only_a_last_batch_too_small_for_batch_norm(records):
    def batches(n, batch_size, train=True):
        rc = load_config(None, [*TINY, f"recognition.batch_size={batch_size}"]).recognition
        return [len(labels) for _, labels in train_module._loader(records[:n], rc, train=train, seed=0)]

    assert batches(5, 2) == [2, 2]             # a lone clip is dropped (another one next epoch)
    assert batches(5, 4) == [4]                # 1 < max(2, 4 // 2)
    assert batches(4, 3) == [3]
    assert batches(5, 3) == [3, 2]             # 2 clips: kept
    assert batches(3, 4) == [3]                # no full batch: nothing dropped
    assert batches(5, 2, train=False) == [2, 2, 1]  # never at test time


def _model(rc):
    """A linear clip classifier: the loop is under test here, not the baselines (fast)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.1),
                               torch.nn.Linear(rc.num_segments * 3 * rc.image_size ** 2, 7))


@pytest.fixture()
def saves(monkeypatch):
    """Epochs saved to the partial checkpoint; `saves.stop_after = k` interrupts after epoch k's save."""
    real_save = train_module._save

    class Saves(list):
        stop_after = None

    seen = Saves()

    def spy(path, payload):
        real_save(path, payload)
        seen.append(payload["epoch"])
        if payload["epoch"] == seen.stop_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save", spy)
    return seen


def test_an_interrupted_run_resumes_from_its_last_epoch_on_the_same_schedule(tmp_path, records, saves):
    rc = load_config(None, TINY).recognition
    full = train_model(_model(rc), records, rc, partial=None, progress=False)
    steps = len(train_module._loader(records, rc, train=True, seed=0))
    assert [h["lr"] for h in full] == pytest.approx([rc.lr * lr_factor(steps * (e + 1), 3 * steps, steps)
                                                     for e in range(3)])
    assert full[-1]["lr"] == pytest.approx(0.0, abs=1e-12)

    partial = tmp_path / "unit.partial.pt"
    saves.stop_after = 2
    with pytest.raises(KeyboardInterrupt):
        train_model(_model(rc), records, rc, partial=partial, progress=False)
    interrupted = torch.load(partial, weights_only=False)["history"]
    saves.clear()
    resumed = train_model(_model(rc), records, rc, partial=partial, progress=False)
    assert saves == [3]  # epochs 1 and 2 were not redone
    assert resumed[:2] == interrupted and [h["epoch"] for h in resumed] == [1, 2, 3]
    assert [h["lr"] for h in resumed] == pytest.approx([h["lr"] for h in full])


def test_a_partial_checkpoint_from_other_settings_or_clips_is_not_resumed(tmp_path, records, saves):
    partial = tmp_path / "unit.partial.pt"
    short = load_config(None, [*TINY, "recognition.epochs=1"]).recognition
    train_model(_model(short), records, short, partial=partial, progress=False)
    assert saves == [1]

    saves.clear()
    longer = load_config(None, [*TINY, "recognition.epochs=2"]).recognition
    train_model(_model(longer), records, longer, partial=partial, progress=False)
    assert saves == [1, 2]  # started over: epoch 1 was saved on another schedule

    saves.clear()
    train_model(_model(longer), records[:-1], longer, partial=partial, progress=False)
    assert saves == [1, 2]  # started over: other clips
