"""Generation metrics of a run: FVD / tFVD / sFVD on one I3D pass and within-class diversity,
with small groups reported instead of scored."""
from __future__ import annotations

import json

import numpy as np
import pytest

from argen_ray.config import load_config
from argen_ray.data.labels import label_index
from argen_ray.data.records import ClipRecord, Dataset
from argen_ray.data.video import write_mp4
from argen_ray.metrics.fvd import MetricInputError
from argen_ray.metrics.generation import generation_metrics


def _clip(path, seed, shift):
    """A 16-frame clip of a moving bright square on a per-seed background."""
    rng = np.random.default_rng(seed)
    frames = np.empty((16, 64, 64, 3), np.uint8)
    frames[:] = rng.integers(0, 120, 3, dtype=np.uint8)
    for t in range(16):
        x = (4 * t + shift) % 48
        frames[t, 20:36, x:x + 16] = 230
    write_mp4(path, frames, fps=8)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen-metrics")
    real = [ClipRecord(f"r{i}", _clip(root / f"r{i}.mp4", i, 3 * i), label_index(emotion), subject=subject)
            for i, (emotion, subject) in enumerate([("fear", "s1"), ("fear", "s1"), ("fear", "s2"),
                                                    ("surprise", "s2"), ("surprise", "s1"), ("happy", "s1")])]
    return root, Dataset("dfew", root, real)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One run folder for the module: its I3D feature cache serves the real clips to every test,
    as the generation stage's cache serves the metrics stage."""
    return tmp_path_factory.mktemp("gen-metrics-run")


def test_generated_copies_of_the_real_clips_score_zero_and_small_groups_are_reported(clips, run_dir):
    root, dataset = clips
    cfg = load_config(None, [f"run_dir={run_dir}", "recognition.diversity_image_size=32",
                             "recognition.diversity_frames=2"])
    # "Generated" = the real fear/surprise clips themselves: every distance is zero.
    generated = [ClipRecord(f"gen/{r.clip_id}", r.source, r.label, subject=r.subject)
                 for r in dataset.records if r.emotion in ("fear", "surprise")]
    result = generation_metrics(cfg, dataset, generated, progress=False)
    assert result["emotions"] == ["surprise", "fear"]  # canonical label order
    assert result["num_real"] == 5  # the happy clip is not an emotion that was generated
    assert result["fvd"] == pytest.approx(0.0, abs=1e-3)
    assert set(result["tfvd"]["per_group"]) == {"fear", "surprise"}
    assert result["tfvd"]["value"] == pytest.approx(0.0, abs=1e-3)
    # sFVD compares a subject's generated clips with its real clips of the generated emotions
    # (s1's happy clip is not one of them), so the copies score 0 there too.
    assert set(result["sfvd"]["per_group"]) == {"s1", "s2"}
    assert result["sfvd"]["value"] == pytest.approx(0.0, abs=1e-3)
    div = result["diversity"]
    assert div["generated"]["per_class"] == pytest.approx(div["real"]["per_class"])
    saved = json.loads((run_dir / "metrics" / "generation.json").read_text())
    assert saved["fvd"] == result["fvd"] and (run_dir / "metrics" / "generation_groups.png").is_file()


def test_groups_below_the_minimum_are_skipped_with_the_reason(clips, run_dir, tmp_path):
    root, dataset = clips
    cfg = load_config(None, [f"run_dir={run_dir}", "recognition.diversity_image_size=32",
                             "recognition.diversity_frames=2", "recognition.fvd_min_group_size=3"])
    generated = [ClipRecord(f"gen{i}", _clip(root / f"g{i}.mp4", 10 + i, i), label_index("fear"), subject="s2")
                 for i in range(3)]
    result = generation_metrics(cfg, dataset, generated, out_dir=tmp_path / "m", progress=False)
    assert result["fvd"] > 0
    assert result["tfvd"]["per_group"].keys() == {"fear"}
    assert "s2" in result["sfvd"]["skipped"] and "needs 3" in result["sfvd"]["skipped"]["s2"]
    assert result["sfvd"]["value"] is None


def test_too_few_generated_or_real_clips_is_a_clear_error(clips, tmp_path):
    root, dataset = clips
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    one = [ClipRecord("gen0", dataset.records[0].source, label_index("fear"))]
    with pytest.raises(MetricInputError, match="1 generated clip"):
        generation_metrics(cfg, dataset, one, progress=False)
    disgust = [ClipRecord(f"g{i}", dataset.records[0].source, label_index("disgust")) for i in range(2)]
    with pytest.raises(MetricInputError, match="0 real clip"):
        generation_metrics(cfg, dataset, disgust, progress=False)
