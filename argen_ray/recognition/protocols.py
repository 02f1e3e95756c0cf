"""Original vs augmented recognition under each dataset's protocol (DESIGN 2.4, 2.5).

Only the training set changes: the augmented variant is the original training split plus the
generated clips (labelled with the emotion they were generated for); both variants are scored
on the same, untouched test split. Nothing is selected or tuned on the test split: every unit
trains for the configured epochs and is scored once at the end.

A comparison is a study over (fold, seed) pairs (DESIGN 2.5): `recognition.folds` (DFEW and demo
data; default the configured fold) x `recognition.seeds` (default the run's seed). On each pair
the original-only recognizer is trained, judges the generated clips (recognizability; with
`recognition.filter_unrecognized` the clips it rejects are dropped), then the augmented one is
trained. The summary (`argen_ray.recognition.study`) reports mean ± std over pairs, the paired
difference augmented − original with a 95 % bootstrap CI, and the verdict line.

Protocols (registry `PROTOCOLS`, by `cfg.data.kind`):
- dfew / demo: DFEW's 5-fold cross-validation, pairs over the configured folds and seeds.
- ferv39k, dferclip, manifest: the dataset's own train/test split, pairs over the seeds.
- ckplus: zero-shot: checkpoints trained elsewhere (`recognition.zero_shot_from`) are scored on
  every CK+ clip; nothing is trained.

Outputs under `<run_dir>/recognition/`: `results.jsonl` (one row per model x fold x seed x
variant: a rerun resumes pair by pair), checkpoints, `features/` (frozen-backbone feature cache),
`results.json` (per pair, and the study summary under "study"), and PNG plots (confusion matrices
summed over pairs, per-class recall mean ± std). Recognizability also goes to
`<run_dir>/metrics/recognizability.json`.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from argen_ray.data.labels import EMOTIONS
from argen_ray.data.records import ClipRecord, Dataset
from argen_ray.io import atomic_write_json
from argen_ray.recognition.clips import read_generated_clips
from argen_ray.recognition.metrics import plot_confusion_matrix, plot_recall_comparison
from argen_ray.recognition.models import RecognitionError, display_name
from argen_ray.recognition.study import describe, summarize_study
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


def _plots(out_dir: Path, name: str, pairs: list[dict], study: dict, scarce: list[str]) -> dict[str, str]:
    """Confusion matrices summed over the pairs, per variant; per-class recall mean ± std over pairs."""
    plots = {}
    variants = study["variants"]
    for variant in variants:
        cm = np.sum([p["models"][name][variant]["confusion_matrix"] for p in pairs], axis=0)
        path = out_dir / "plots" / f"{name}_{variant}_confusion.png"
        s = variants[variant]
        plot_confusion_matrix(cm, EMOTIONS, path, title=f"{display_name(name)} {variant}, {len(pairs)} pair(s) summed: "
                              f"WAR {s['war']['mean']:.3f}  UAR {s['uar']['mean']:.3f}")
        plots[f"confusion_{variant}"] = str(path)
    if len(variants) > 1:
        path = out_dir / "plots" / f"{name}_recall.png"
        plot_recall_comparison({v: [s[f"ar_{c}"]["mean"] for c in EMOTIONS] for v, s in variants.items()}, EMOTIONS,
                               path, title=f"{display_name(name)}: per-class recall, mean ± std over {len(pairs)} pair(s)",
                               highlight=scarce, errors={v: [s[f"ar_{c}"]["std"] for c in EMOTIONS]
                                                         for v, s in variants.items()})
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
            "checkpoint", "seed")
    return {k: row[k] for k in keep if k in row}


def recognizability(checkpoint: str | os.PathLike, generated: list[ClipRecord], rc, out_dir: Path,
                    progress: bool = True) -> tuple[dict, list[bool]]:
    """The original-only recognizer's recall on the generated clips, per class (DESIGN 2.5), and
    per clip whether it was labelled with the emotion it was generated for."""
    from argen_ray.recognition.train import feature_cache, resolve_device

    model, meta = load_checkpoint(checkpoint, resolve_device(rc.device))
    rc = rc.model_copy(update={"num_segments": meta["num_segments"], "image_size": meta["image_size"]})
    cache = feature_cache(model, rc, out_dir)
    y_true, y_pred = predict(model, generated, rc, progress=progress, desc="recognizability", cache=cache)
    hit = [bool(t == p) for t, p in zip(y_true, y_pred)]
    per_class = {}
    for c in sorted(set(int(t) for t in y_true)):
        n = int(sum(int(t) == c for t in y_true))
        k = int(sum(h for t, h in zip(y_true, hit) if int(t) == c))
        per_class[EMOTIONS[c]] = {"clips": n, "recognized": k, "recall": k / n}
    return {"per_class": per_class, "clips": len(hit), "recognized": int(sum(hit))}, hit


def _pair_records(dataset: Dataset, generated_manifest) -> tuple[list, list, list, int, int | None]:
    """(train, test, generated clips whose subjects are not test subjects, how many were dropped,
    the fold) of one split of `dataset`."""
    train, test = dataset.split("train"), dataset.split("test")
    if not train or not test:
        raise RecognitionError(f"{dataset.kind} dataset at {dataset.root} needs a train and a test split "
                               f"(has {', '.join(dataset.split_names)}); CK+ is evaluated zero-shot")
    folds = {r.fold for r in dataset.records}
    generated, dropped = ([], 0) if generated_manifest is None else leakage_free(
        read_generated_clips(generated_manifest), test)
    if generated_manifest is not None and not generated:
        raise RecognitionError(f"{generated_manifest}: no usable generated clips for this split "
                               f"({dropped} dropped as test subjects)")
    return train, test, generated, dropped, folds.pop() if len(folds) == 1 else None


def compare_original_vs_augmented(cfg: "Config", dataset: Dataset, generated_manifest: str | os.PathLike | None,
                                  out_dir: str | os.PathLike | None = None, progress: bool = True,
                                  seed: int | None = None) -> dict:
    """Train every `cfg.recognition.models` baseline on the original and on the augmented training
    split of `dataset` with one seed, score both on its test split.

    Between the two, the original-only recognizer labels the generated clips (recognizability);
    with `recognition.filter_unrecognized` the clips it does not label with their emotion are left
    out of the augmented training set (counted per class in "filter_dropped").

    Returns {"dataset", "fold", "seed", "scarce", "num_generated", "dropped_generated", "test_count",
    "models": {name: {"original": scores, "augmented": scores, "delta": {...}, "recognizability": {...},
    "filter_dropped": {class: n}}}} where scores hold war, uar, per_class_recall, ar (by class name),
    confusion_matrix. With no manifest only the original variant is trained.
    """
    from argen_ray.data.scarce import configured_scarce_classes

    rc = cfg.recognition
    seed = cfg.seed if seed is None else int(seed)
    train, test, generated, dropped, fold = _pair_records(dataset, generated_manifest)
    out_dir = Path(out_dir) if out_dir is not None else cfg.path("recognition")
    scarce = [EMOTIONS[i] for i in configured_scarce_classes(cfg, dataset)]
    result = {"dataset": dataset.kind, "root": str(dataset.root), "fold": fold, "seed": seed, "scarce": scarce,
              "num_generated": len(generated), "dropped_generated": dropped, "test_count": len(test),
              "class_names": list(EMOTIONS), "models": {}}
    for name in rc.models:
        unit = lambda variant, records: train_and_evaluate(  # noqa: E731
            name, records, test, rc, out_dir, fold=fold, variant=variant, seed=seed, progress=progress)
        rows = {"original": unit("original", train)}
        entry: dict = {}
        if generated:
            entry["recognizability"], hit = recognizability(rows["original"]["checkpoint"], generated, rc, out_dir,
                                                            progress=progress)
            drop = [rc.filter_unrecognized and not h for h in hit]
            kept = [g for g, d in zip(generated, drop) if not d]
            entry["filter_dropped"] = dict(Counter(EMOTIONS[g.label] for g, d in zip(generated, drop) if d))
            rows["augmented"] = unit("augmented", train + kept)
        entry = {variant: _public(row) for variant, row in rows.items()} | entry
        entry["delta"] = _delta(rows)
        result["models"][name] = entry
    return result


def _pooled_recognizability(pairs: list[dict], name: str, study: dict) -> dict | None:
    """Recognizability per class pooled over pairs, beside the original recognizer's recall on that
    class's real test clips (mean over pairs) and what the filter dropped."""
    rows = [p["models"][name] for p in pairs if "recognizability" in p["models"][name]]
    if not rows:
        return None
    per_class: dict = {}
    for row in rows:
        for c, r in row["recognizability"]["per_class"].items():
            acc = per_class.setdefault(c, {"clips": 0, "recognized": 0, "per_pair": [], "filter_dropped": 0})
            acc["clips"] += r["clips"]
            acc["recognized"] += r["recognized"]
            acc["per_pair"].append(r["recall"])
        for c, n in row.get("filter_dropped", {}).items():
            per_class.setdefault(c, {"clips": 0, "recognized": 0, "per_pair": [], "filter_dropped": 0})
            per_class[c]["filter_dropped"] += n
    original = study["variants"]["original"]
    for c, acc in per_class.items():
        acc["recall"] = acc["recognized"] / acc["clips"] if acc["clips"] else None
        acc["recall_std"] = describe(acc["per_pair"])["std"]
        acc["real_test_recall"] = original[f"ar_{c}"]["mean"]
    return {"per_class": per_class, "pairs": len(rows),
            "filter_dropped": sum(a["filter_dropped"] for a in per_class.values())}


def study_pairs(cfg: "Config") -> list[tuple[int | None, int]]:
    """The (fold, seed) pairs of the configured study: `recognition.folds` (default the configured
    fold; none for datasets without folds) x `recognition.seeds` (default the run's seed)."""
    seeds = cfg.recognition.seeds or [cfg.seed]
    folds = (cfg.recognition.folds or [cfg.data.fold]) if PROTOCOLS_WITH_FOLDS.get(cfg.data.kind) else [None]
    return [(fold, seed) for fold in folds for seed in seeds]


def _fold_config(cfg: "Config", fold: int | None) -> "Config":
    return cfg if fold is None else cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": fold})})


def _study_pair(cfg: "Config", fold: int | None, seed: int, generated_manifest, progress: bool) -> dict:
    """One (fold, seed) pair of the study: its units resume from `results.jsonl`."""
    from argen_ray.data import open_dataset

    pair_cfg = _fold_config(cfg, fold)
    return compare_original_vs_augmented(pair_cfg, open_dataset(pair_cfg), generated_manifest, progress=progress,
                                         seed=seed)


def _study_unit(cfg: "Config", fold: int | None, seed: int, generated_manifest, variant: str) -> None:
    """One variant of one pair for every model, trained and saved to `results.jsonl` exactly as
    `compare_original_vs_augmented` trains it (a worker process's job; the pair then finds it)."""
    from argen_ray.data import open_dataset

    pair_cfg = _fold_config(cfg, fold)
    train, test, generated, _, fold = _pair_records(open_dataset(pair_cfg), generated_manifest)
    for name in cfg.recognition.models:
        train_and_evaluate(name, train + (generated if variant == "augmented" else []), test, cfg.recognition,
                           cfg.path("recognition"), fold=fold, variant=variant, seed=seed, progress=False)


def _fill_features(cfg: "Config", models: list[str], records: list[ClipRecord]) -> None:
    """The features of `records` for the frozen-backbone `models` (a worker's share)."""
    from argen_ray.recognition.train import feature_cache, new_model

    for name in models:
        feature_cache(new_model(name, cfg.recognition), cfg.recognition, cfg.path("recognition")).fill(
            records, progress=False)


def _in_processes(calls: list[tuple[Callable, tuple]], processes: int, desc: str, progress: bool) -> list:
    """`fn(*args)` for every call in `processes` spawned workers of one torch thread each, results
    in call order; the first error is raised once the running calls have finished (each pair's
    finished units are saved, so a rerun resumes)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch
    from tqdm.auto import tqdm

    out: list = [None] * len(calls)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(calls)}
        for future in tqdm(as_completed(futures), total=len(calls), desc=desc, unit="job", disable=not progress):
            out[futures[future]] = future.result()
    return out


def _prefill_features(cfg: "Config", generated_manifest, processes: int, progress: bool) -> None:
    """Compute the frame features every pair reads (the dataset's clips and the generated ones) once,
    spread over the worker processes, before the pairs start (else two workers would compute the
    same clip)."""
    from argen_ray.data import open_dataset
    from argen_ray.recognition.models import BACKBONES, MODELS

    frozen = [m for m in cfg.recognition.models if getattr(BACKBONES[MODELS[m][0]], "frozen", False)]
    if not frozen:  # end-to-end models cache nothing
        return
    records = list(open_dataset(cfg).records)
    if generated_manifest is not None:
        records += read_generated_clips(generated_manifest)
    shards = [records[k::processes] for k in range(processes)]
    _in_processes([(_fill_features, (cfg, frozen, shard)) for shard in shards if shard], processes,
                  "frame features (parallel)", progress)


def run_study(cfg: "Config", generated_manifest, progress: bool = True) -> dict:
    """Every (fold, seed) pair of the study (each resumes unit by unit), then the study summary:
    mean ± std per variant, paired Δ with bootstrap CI, verdict, recognizability, plots. With
    `recognition.processes` > 1 the units (model x pair x variant) train that many at a time in
    worker processes first."""
    todo = study_pairs(cfg)
    # Units, not pairs, are the parallel jobs: 3 pairs on 2 workers would leave one idle for a third
    # of the time. The filter needs the original recognizer's verdicts, so with it on the
    # augmented units train in the pass below.
    augmented_later = generated_manifest is not None and cfg.recognition.filter_unrecognized
    variants = ["original"] if augmented_later or generated_manifest is None else list(VARIANTS)
    units = [(fold, seed, variant) for fold, seed in todo for variant in variants]
    processes = min(cfg.recognition.processes, len(units))
    if processes > 1:
        _prefill_features(cfg, generated_manifest, processes, progress)
        _in_processes([(_study_unit, (cfg, fold, seed, generated_manifest, variant))
                       for fold, seed, variant in units], processes, "study units", progress)
    if processes > 1 and augmented_later and len(todo) > 1:
        pairs = _in_processes([(_study_pair, (cfg, fold, seed, generated_manifest, False)) for fold, seed in todo],
                              min(processes, len(todo)), "study pairs", progress)
    else:
        pairs = [_study_pair(cfg, fold, seed, generated_manifest, progress) for fold, seed in todo]
    scarce = pairs[0]["scarce"]
    study = summarize_study(pairs, scarce)
    out_dir = cfg.path("recognition")
    for name, entry in study.items():
        entry["display_name"] = display_name(name)
        entry["plots"] = _plots(out_dir, name, pairs, entry, scarce)
        entry["recognizability"] = _pooled_recognizability(pairs, name, entry)
    folded = pairs[0]["fold"] is not None
    return {"protocol": "dfew-5fold" if folded else "official-split", "folds": sorted({p["fold"] for p in pairs}, key=str),
            "seeds": sorted({p["seed"] for p in pairs}), "pairs": [[p["fold"], p["seed"]] for p in pairs],
            "per_fold": pairs, "mean": _mean_over_folds(pairs), "study": study, "scarce": scarce,
            "filter_unrecognized": cfg.recognition.filter_unrecognized}


def _mean_over_folds(per_fold: list[dict]) -> dict:
    """Mean (and std) of WAR, UAR and per-class recall over (fold, seed) pairs, per model and variant."""
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
    "demo": run_study, "dfew": run_study,
    "ferv39k": run_study, "dferclip": run_study, "manifest": run_study,
    "ckplus": zero_shot,
}
# Kinds whose study runs over DFEW's folds (the others have one official split).
PROTOCOLS_WITH_FOLDS = {"demo": True, "dfew": True}


def run_protocol(cfg: "Config", generated_manifest: str | os.PathLike | None = None,
                 progress: bool = True) -> dict:
    """The protocol of `cfg.data.kind`, with its summary written to `<run_dir>/recognition/results.json`
    and, when generated clips were judged, their recognizability to `<run_dir>/metrics/recognizability.json`."""
    result = PROTOCOLS[cfg.data.kind](cfg, generated_manifest, progress=progress)
    result["generated_manifest"] = None if generated_manifest is None else str(generated_manifest)
    atomic_write_json(cfg.path("recognition", "results.json"), result)
    judged = {name: e["recognizability"] for name, e in result.get("study", {}).items() if e.get("recognizability")}
    if judged:
        atomic_write_json(cfg.path("metrics", "recognizability.json"),
                          {"models": judged, "filter_unrecognized": cfg.recognition.filter_unrecognized,
                           "pairs": result["pairs"], "generated_manifest": result["generated_manifest"]})
    return result
