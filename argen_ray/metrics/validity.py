"""Generated-clip validity (DESIGN 2.5): do a class's generated clips look like its real clips?

Per class, generated clips against the real training clips of the same class:

- expression-motion ratio: median apex displacement from frame 0 (generated) / the same for real
  clips. Both sides are measured the same way: dlib's 68 landmarks on every decoded frame,
  head pose removed (`argen_ray.data.dynamics`);
- FVD of the class's generated clips against the class's real clips (I3D, `metrics.fvd`);
- face presence: the share of frames in which the reward's face detector (`reward.face_detector`,
  Haar by default; R_f's) finds a face, generated and real;
- separability: a cross-validated logistic regression on simple motion and texture statistics
  (the dynamics' scalars: onset, apex, hold, apex displacement, frame-to-frame change, head
  motion, sensor noise, sharpness) telling generated from real; its ROC AUC, pooled over the
  classes (0.5: indistinguishable, 1: trivially separable) and per class where both sides have
  enough clips.

Written to `<run_dir>/metrics/validity.json`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from argen_ray.data.dynamics import SUMMARY_FIELDS, ClipDynamics, measure_records
from argen_ray.data.labels import EMOTIONS
from argen_ray.io import atomic_write_json

if TYPE_CHECKING:
    from argen_ray.config import Config
    from argen_ray.data.records import ClipRecord, Dataset

I3D_CACHE = "i3d-features"  # <run_dir>/metrics/<this>: I3D logits per clip, shared with the metrics stage
MIN_CLASS_CLIPS = 5    # per side, for a per-class separability AUC
CV_FOLDS = 5


def tracked_record_landmarks(record, frames):
    """Landmarks for validity: dlib on the frames for real and generated clips alike."""
    from argen_ray.data.dynamics import tracked_landmarks

    return tracked_landmarks(frames)


def separability_auc(real: Sequence[ClipDynamics], generated: Sequence[ClipDynamics],
                     classes: Sequence[str] | None = None, seed: int = 0) -> dict:
    """Cross-validated ROC AUC of a logistic regression telling generated (1) from real (0) clips
    by their standardized dynamics scalars (plus a one-hot of the class when `classes` has >1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clips = list(real) + list(generated)
    y = np.array([0] * len(real) + [1] * len(generated))
    folds = min(CV_FOLDS, len(real), len(generated))
    if folds < 2:
        return {"auc": None, "reason": f"{len(real)} real and {len(generated)} generated clips: need >= 2 of each"}
    x = np.array([c.features() for c in clips], np.float64)
    if classes and len(classes) > 1:
        x = np.hstack([x, np.array([[float(c.label == k) for k in classes] for c in clips])])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    model.fit(x, y)
    weights = model[-1].coef_[0][:len(SUMMARY_FIELDS)]
    top = sorted(zip(SUMMARY_FIELDS, weights), key=lambda t: -abs(t[1]))[:3]
    return {"auc": round(float(roc_auc_score(y, proba)), 4), "folds": folds, "real": len(real),
            "generated": len(generated), "top_features": {k: round(float(w), 3) for k, w in top}}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def motion_and_separability(real: Sequence[ClipDynamics], generated: Sequence[ClipDynamics]) -> dict:
    """Per class: median apex displacement of both sides, their ratio, and the separability AUC;
    plus the pooled AUC over every class."""
    classes = sorted({c.label for c in generated})
    per_class = {}
    for k in classes:
        r = [c for c in real if c.label == k]
        g = [c for c in generated if c.label == k]
        real_d, gen_d = _median([c.apex_displacement for c in r]), _median([c.apex_displacement for c in g])
        entry = {"real_clips": len(r), "generated_clips": len(g), "real_apex_displacement": real_d,
                 "generated_apex_displacement": gen_d,
                 "motion_ratio": round(gen_d / real_d, 4) if real_d and gen_d is not None else None,
                 "real_summary": _summary(r), "generated_summary": _summary(g)}
        if len(r) >= MIN_CLASS_CLIPS and len(g) >= MIN_CLASS_CLIPS:
            entry["separability"] = separability_auc(r, g)
        per_class[k] = entry
    pooled_real = [c for c in real if c.label in classes]
    return {"classes": per_class, "separability": separability_auc(pooled_real, generated, classes)}


def _summary(clips: Sequence[ClipDynamics]) -> dict:
    from argen_ray.data.dynamics import summarize

    return {k: v["median"] for k, v in summarize(clips).items()} if clips else {}


def face_presence(records: Sequence["ClipRecord"], reward_cfg, progress: bool = False,
                  desc: str = "face presence") -> dict[str, float]:
    """{class: share of its clips' frames in which the reward's face detector finds a face}.
    Unreadable clips are left out (the dynamics report them as skipped)."""
    from tqdm.auto import tqdm

    from argen_ray.ard.rewards import FACE_DETECTORS, gray_frames
    from argen_ray.data.video import VideoReadError, read_video

    detector = FACE_DETECTORS[reward_cfg.face_detector](reward_cfg)
    found: dict[str, list[float]] = {}
    for record in tqdm(list(records), desc=desc, unit="clip", disable=not progress):
        try:
            frames = read_video(record.source)
        except VideoReadError:
            continue
        found.setdefault(EMOTIONS[record.label], []).extend(detector.probabilities(frames, gray_frames(frames)))
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(found.items())}


def per_class_fvd(real: Sequence["ClipRecord"], generated: Sequence["ClipRecord"], progress: bool = False,
                  cache_dir: str | os.PathLike | None = None) -> dict:
    """{class: FVD of its generated clips against its real clips} (None where a side has < 2).
    Every clip goes through I3D once (`cache_dir`: kept for the metrics stage)."""
    from argen_ray.metrics.fvd import frechet_distance, i3d_features

    classes = sorted({EMOTIONS[g.label] for g in generated})
    real = [x for x in real if EMOTIONS[x.label] in classes]
    feats = i3d_features([x.source for x in list(generated) + real], progress=progress, cache_dir=cache_dir)
    labels = np.array([EMOTIONS[x.label] for x in list(generated) + real])
    is_gen = np.arange(len(labels)) < len(generated)
    out = {}
    for k in classes:
        g, r = feats[is_gen & (labels == k)], feats[~is_gen & (labels == k)]
        out[k] = None if len(r) < 2 or len(g) < 2 else round(float(frechet_distance(g, r)), 3)
    return out


def validity_metrics(cfg: "Config", dataset: "Dataset", generated: "list[ClipRecord]",
                     out_dir: str | os.PathLike | None = None, progress: bool = True, fvd: bool = True,
                     before_fvd: Callable[[], None] | None = None) -> dict:
    """Motion ratio, separability and per-class FVD of `generated` against the real training
    clips of their classes; written to `<out_dir or run_dir/metrics>/validity.json`.
    `before_fvd` is called between the dynamics and the FVD (a run stops its background I3D
    features there, `metrics.prefetch`)."""
    from argen_ray.metrics.prefetch import real_clips_for_metrics

    real_records = real_clips_for_metrics(dataset, {g.label for g in generated}, ())["validity"]
    real, real_skipped = measure_records(real_records, tracked_record_landmarks, progress, "real clip dynamics")
    gen, gen_skipped = measure_records(generated, tracked_record_landmarks, progress, "generated clip dynamics")
    result = motion_and_separability(real, gen)
    faces = {side: face_presence(records, cfg.reward, progress, f"{side} face presence")
             for side, records in (("generated", generated), ("real", real_records))}
    for k, entry in result["classes"].items():
        entry["face_presence"], entry["real_face_presence"] = faces["generated"].get(k), faces["real"].get(k)
    if before_fvd is not None:
        before_fvd()
    fvd_values = per_class_fvd(real_records, generated, progress, cfg.path("metrics", I3D_CACHE)) if fvd else {}
    for k, entry in result["classes"].items():
        entry["fvd"] = fvd_values.get(k)
    result |= {"landmarks": "dlib 68 on every frame, both sides", "real_split": "train",
               "skipped": {"real": real_skipped, "generated": gen_skipped}}
    out = Path(out_dir) if out_dir is not None else cfg.path("metrics")
    atomic_write_json(out / "validity.json", result)
    return result


def validity_lines(result: dict) -> list[str]:
    """Printable per-class lines (the generation stage prints them)."""
    lines = []
    for k, e in result["classes"].items():
        ratio, auc, fvd = e["motion_ratio"], (e.get("separability") or {}).get("auc"), e.get("fvd")
        lines.append(f"{k}: motion ratio {_num(ratio, '.2f')} ({e['generated_clips']} generated / "
                     f"{e['real_clips']} real), face presence {_num(e.get('face_presence'), '.3f')} (real "
                     f"{_num(e.get('real_face_presence'), '.3f')}), FVD {_num(fvd, '.1f')}, separability AUC "
                     f"{_num(auc, '.2f')}")
    pooled = result["separability"].get("auc")
    lines.append(f"pooled separability AUC (generated vs real, cross-validated logistic regression): "
                 f"{_num(pooled, '.2f')}")
    return lines


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


__all__ = ["face_presence", "motion_and_separability", "per_class_fvd", "separability_auc", "validity_lines", "validity_metrics"]
