"""Original vs augmented recognition under each dataset's protocol (DESIGN 2.4).

Only the training set changes: the augmented variant is the original training split plus the
generated clips (labelled with the emotion they were generated for); both variants are scored
on the same, untouched test split.

Protocols (registry `PROTOCOLS`, by `cfg.data.kind`):
- dfew / demo: DFEW's 5-fold cross-validation (`recognition.folds`, default the configured
  fold only); per-fold results and their mean.
- ferv39k, dferclip, manifest: the dataset's own train/test split.
- ckplus: zero-shot: checkpoints trained elsewhere (`recognition.zero_shot_from`) are scored on
  every CK+ clip; nothing is trained.

Outputs under `<run_dir>/recognition/`: `results.jsonl` (one row per model x fold x variant,
resumable), checkpoints, `results.json` (the summary), and PNG plots (confusion matrices,
per-class recall before/after).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from argen_ray.data.labels import EMOTIONS
from argen_ray.data.records import ClipRecord, Dataset
from argen_ray.io import atomic_write_json
from argen_ray.recognition.clips import read_generated_clips
from argen_ray.recognition.metrics import plot_confusion_matrix, plot_recall_comparison
from argen_ray.recognition.models import RecognitionError
from argen_ray.recognition.train import load_checkpoint, predict, score, train_and_evaluate

if TYPE_CHECKING:
    from argen_ray.config import Config

VARIANTS = ("original", "augmented")
SUMMARY_KEYS = ("war", "uar")


def leakage_free(generated: list[ClipRecord], test: list[ClipRecord]) -> tuple[list[ClipRecord], int]:
    """Drop generated clips made from a test subject (or a test clip) of this split.

    Generated clips come from identities of one fold's training split; under 5-fold
    cross-validation those identities are test subjects of another fold.
    """
    test_ids = {r.subject for r in test if r.subject} | {r.clip_id for r in test}
    kept = [g for g in generated if not (g.subject and g.subject in test_ids)]
    return kept, len(generated) - len(kept)


def _plots(out_dir: Path, stem: str, rows: dict[str, dict], scarce: list[str]) -> dict[str, str]:
    plots = {}
    for variant, row in rows.items():
        path = out_dir / "plots" / f"{stem}_{variant}_confusion.png"
        plot_confusion_matrix(np.array(row["confusion_matrix"]), EMOTIONS, path,
                              title=f"{stem} {variant}: WAR {row['war']:.3f}  UAR {row['uar']:.3f}")
        plots[f"confusion_{variant}"] = str(path)
    if len(rows) > 1:
        path = out_dir / "plots" / f"{stem}_recall.png"
        plot_recall_comparison({v: r["per_class_recall"] for v, r in rows.items()}, EMOTIONS, path,
                               title=f"{stem}: per-class recall", highlight=scarce)
        plots["recall"] = str(path)
    return plots


def _delta(rows: dict[str, dict]) -> dict | None:
    if not all(v in rows for v in VARIANTS):
        return None
    before, after = rows["original"], rows["augmented"]
    per_class = {name: (None if a is None or b is None else a - b)
                 for name, b, a in zip(EMOTIONS, before["per_class_recall"], after["per_class_recall"])}
    return {"war": after["war"] - before["war"], "uar": after["uar"] - before["uar"], "ar": per_class}


def _public(row: dict) -> dict:
    keep = ("war", "uar", "per_class_recall", "ar", "confusion_matrix", "num_test", "train_counts", "history",
            "checkpoint")
    return {k: row[k] for k in keep if k in row}


def compare_original_vs_augmented(cfg: "Config", dataset: Dataset, generated_manifest: str | os.PathLike | None,
                                  out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Train every `cfg.recognition.models` baseline on the original and on the augmented training
    split of `dataset`, score both on its test split, and plot the comparison.

    Returns {"dataset", "fold", "scarce", "num_generated", "dropped_generated", "test_count",
    "models": {name: {"original": scores, "augmented": scores, "delta": {...}, "plots": {...}}}}
    where scores hold war, uar, per_class_recall, ar (by class name), confusion_matrix.
    With no manifest only the original variant is trained.
    """
    from argen_ray.data.scarce import configured_scarce_classes

    rc = cfg.recognition
    train, test = dataset.split("train"), dataset.split("test")
    if not train or not test:
        raise RecognitionError(f"{dataset.kind} dataset at {dataset.root} needs a train and a test split "
                               f"(has {', '.join(dataset.split_names)}); CK+ is evaluated zero-shot")
    folds = {r.fold for r in dataset.records}
    fold = folds.pop() if len(folds) == 1 else None
    out_dir = Path(out_dir) if out_dir is not None else cfg.path("recognition")
    generated, dropped = ([], 0) if generated_manifest is None else leakage_free(
        read_generated_clips(generated_manifest), test)
    if generated_manifest is not None and not generated:
        raise RecognitionError(f"{generated_manifest}: no usable generated clips for this split "
                               f"({dropped} dropped as test subjects)")
    scarce = [EMOTIONS[i] for i in configured_scarce_classes(cfg, dataset)]
    training_sets = {"original": train} | ({"augmented": train + generated} if generated else {})
    result = {"dataset": dataset.kind, "root": str(dataset.root), "fold": fold, "scarce": scarce,
              "num_generated": len(generated), "dropped_generated": dropped, "test_count": len(test),
              "class_names": list(EMOTIONS), "models": {}}
    for name in rc.models:
        rows = {variant: train_and_evaluate(name, records, test, rc, out_dir, fold=fold, variant=variant,
                                            seed=cfg.seed, progress=progress)
                for variant, records in training_sets.items()}
        stem = name if fold is None else f"{name}_fold{fold}"
        entry = {variant: _public(row) for variant, row in rows.items()}
        entry["delta"] = _delta(rows)
        entry["plots"] = _plots(out_dir, stem, rows, scarce)
        result["models"][name] = entry
    return result


def _mean_over_folds(per_fold: list[dict]) -> dict:
    """Mean (and std) of WAR, UAR and per-class recall over folds, per model and variant."""
    summary: dict = {}
    for name in per_fold[0]["models"]:
        summary[name] = {}
        for variant in VARIANTS:
            rows = [f["models"][name][variant] for f in per_fold if variant in f["models"][name]]
            if not rows:
                continue
            entry = {k: float(np.mean([r[k] for r in rows])) for k in SUMMARY_KEYS}
            entry |= {f"{k}_std": float(np.std([r[k] for r in rows])) for k in SUMMARY_KEYS}
            recalls = np.array([[np.nan if v is None else v for v in r["per_class_recall"]] for r in rows])
            with warnings.catch_warnings():  # a class absent from every fold's test split: None
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(recalls, axis=0)
            entry["ar"] = {c: (None if np.isnan(m) else float(m)) for c, m in zip(EMOTIONS, mean)}
            entry["folds"] = len(rows)
            summary[name][variant] = entry
    return summary


def cross_validation(cfg: "Config", generated_manifest, progress: bool = True) -> dict:
    """DFEW 5-fold protocol (demo data uses the same layout): one comparison per fold."""
    from argen_ray.data import open_dataset

    folds = cfg.recognition.folds or [cfg.data.fold]
    per_fold = []
    for fold in folds:
        fold_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": fold})})
        per_fold.append(compare_original_vs_augmented(fold_cfg, open_dataset(fold_cfg), generated_manifest,
                                                      progress=progress))
    return {"protocol": "dfew-5fold", "folds": folds, "per_fold": per_fold, "mean": _mean_over_folds(per_fold),
            "scarce": per_fold[0]["scarce"]}


def official_split(cfg: "Config", generated_manifest, progress: bool = True) -> dict:
    """The dataset's own train/test split (FERV39k, DFER-CLIP lists, a manifest)."""
    from argen_ray.data import open_dataset

    result = compare_original_vs_augmented(cfg, open_dataset(cfg), generated_manifest, progress=progress)
    return {"protocol": "official-split", "per_fold": [result],
            "mean": _mean_over_folds([result]), "scarce": result["scarce"]}


def zero_shot(cfg: "Config", generated_manifest=None, progress: bool = True) -> dict:
    """CK+: score checkpoints trained on another dataset on every clip; nothing is trained here."""
    from argen_ray.data import open_dataset
    from argen_ray.recognition.train import resolve_device

    source = cfg.recognition.zero_shot_from
    if source is None:
        raise RecognitionError("CK+ is evaluated zero-shot: set recognition.zero_shot_from to the recognition "
                               "output directory of a run on DFEW or FERV39k")
    checkpoints = sorted(Path(source).glob("checkpoints/*.pt"))
    checkpoints = [c for c in checkpoints if not c.name.endswith(".partial.pt")]
    if not checkpoints:
        raise RecognitionError(f"recognition.zero_shot_from={source}: no checkpoints/*.pt found")
    dataset = open_dataset(cfg)
    device = resolve_device(cfg.recognition.device)
    models: dict = {}
    for path in checkpoints:
        model, meta = load_checkpoint(path, device)
        rc = cfg.recognition.model_copy(update={"num_segments": meta["num_segments"], "image_size": meta["image_size"]})
        y_true, y_pred = predict(model, dataset.records, rc, progress=progress, desc=f"zero-shot {path.stem}")
        key = meta["model"] if meta.get("fold") is None else f"{meta['model']}_fold{meta['fold']}"
        models.setdefault(key, {})[meta["variant"]] = score(y_true, y_pred) | {"checkpoint": str(path)}
    for key, rows in models.items():
        rows["delta"] = _delta(rows)
    return {"protocol": "zero-shot", "source": str(source), "dataset": dataset.kind, "test_count": len(dataset),
            "per_fold": [{"models": models}], "mean": _mean_over_folds([{"models": models}]), "scarce": []}


PROTOCOLS: dict[str, Callable[..., dict]] = {
    "demo": cross_validation, "dfew": cross_validation,
    "ferv39k": official_split, "dferclip": official_split, "manifest": official_split,
    "ckplus": zero_shot,
}


def run_protocol(cfg: "Config", generated_manifest: str | os.PathLike | None = None,
                 progress: bool = True) -> dict:
    """The protocol of `cfg.data.kind`, with its summary written to `<run_dir>/recognition/results.json`."""
    result = PROTOCOLS[cfg.data.kind](cfg, generated_manifest, progress=progress)
    result["generated_manifest"] = None if generated_manifest is None else str(generated_manifest)
    atomic_write_json(cfg.path("recognition", "results.json"), result)
    return result
