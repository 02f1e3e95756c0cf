"""Training and evaluation of one recognition baseline on one training set (DESIGN 2.4).

`train_and_evaluate` is the unit of work: (model, fold, variant) -> scores on the test split.
It is resumable at two levels: a finished unit is a row of `<out>/results.jsonl` and is not
redone while what it was trained and scored on is unchanged (`unit_inputs`: the model, the
settings, and every clip's id, label and files); an unfinished one restarts from its last
finished epoch (`<name>.partial.pt`, saved atomically after every epoch). The final weights go to `checkpoints/<name>.pt` for CK+
zero-shot evaluation elsewhere.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from argen_ray.config.recognition import RecognitionConfig
from argen_ray.data.labels import EMOTIONS
from argen_ray.data.records import ClipRecord
from argen_ray.data.video import VideoReadError, source_signature
from argen_ray.io import JsonlStore, atomic_path
from argen_ray.recognition.clips import ClipDataset
from argen_ray.recognition.metrics import confusion_matrix, war_uar
from argen_ray.recognition.features import FeatureClipDataset, FrameFeatureCache, one_thread
from argen_ray.recognition.models import MODELS, DFERBaseline, RecognitionError, build_model, default_backbone_weights

NUM_CLASSES = len(EMOTIONS)
CHECKPOINT_FORMAT = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecognitionError("recognition.device is cuda but no CUDA device is available")
    return torch.device(name)


def _loader(records: list[ClipRecord], rc: RecognitionConfig, train: bool, seed: int,
            cache: FrameFeatureCache | None = None) -> DataLoader:
    """Training drops a last batch of fewer than max(2, batch_size // 2) clips when there is a full
    one: batch norm would normalise over the nearly alike frames of one or a few clips there. The
    order is reshuffled every epoch, so no clip is left out for good. With a feature cache (frozen
    backbone) the batches hold per-frame features instead of frames."""
    data = (ClipDataset(records, rc.num_segments, rc.image_size, train=train, seed=seed) if cache is None
            else FeatureClipDataset(records, cache, rc.num_segments, train=train, seed=seed))
    remainder = len(records) % rc.batch_size
    drop_last = train and len(records) > rc.batch_size and 0 < remainder < max(2, rc.batch_size // 2)
    return DataLoader(data, batch_size=rc.batch_size, shuffle=train, num_workers=rc.num_workers,
                      generator=torch.Generator().manual_seed(seed), drop_last=drop_last)


def feature_cache(model: DFERBaseline, rc: RecognitionConfig, out_dir: str | os.PathLike) -> FrameFeatureCache | None:
    """The on-disk per-frame feature cache of a frozen-backbone model (None for end-to-end models):
    `<out_dir>/features/`, shared by every unit that reads the same clips."""
    if not model.frozen_backbone:
        return None
    weights = rc.pretrained.get(model.backbone_name) or default_backbone_weights(model.backbone_name)
    tag = f"{Path(weights).stem}-{Path(weights).stat().st_size}"
    return FrameFeatureCache(Path(out_dir) / "features", model.backbone, model.backbone_name, rc.image_size, tag,
                             device=next(model.parameters()).device)


def _frozen(model: torch.nn.Module) -> bool:
    return getattr(model, "frozen_backbone", False)


def trainable_state(model: DFERBaseline) -> dict:
    """The state dict without a frozen backbone (it is rebuilt from its ImageNet weights)."""
    state = model.state_dict()
    return {k: v for k, v in state.items() if not (_frozen(model) and k.startswith("backbone."))}


def _load_trainable(model: DFERBaseline, state: dict) -> None:
    missing, unexpected = model.load_state_dict(state, strict=not _frozen(model))
    if unexpected or any(not k.startswith("backbone.") for k in missing):
        raise RecognitionError(f"{model.name}: checkpoint does not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _save(path: Path, payload: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base lr at optimiser step `step` (0-based) of `total`: a linear warm-up over
    `warmup` steps, then a cosine decay to 0 at the end of training."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _resume_key(records: list[ClipRecord], rc: RecognitionConfig, seed: int) -> dict:
    """What a partial checkpoint must match to be resumed: the schedule, data and settings."""
    return {"schedule": "warmup-cosine-per-step", "seed": seed, "clips": [r.clip_id for r in records],
            **{k: getattr(rc, k) for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs",
                                           "grad_clip", "num_segments", "image_size", "hidden")}}


def train_model(model: DFERBaseline, records: list[ClipRecord], rc: RecognitionConfig, seed: int = 0,
                partial: Path | None = None, progress: bool = True, desc: str = "train",
                cache: FrameFeatureCache | None = None) -> list[dict]:
    """SGD (momentum, weight decay) with cross-entropy; returns per-epoch history.

    The lr warms up linearly over `rc.warmup_epochs` and then follows a cosine to 0, stepped per
    batch; gradients are clipped to norm `rc.grad_clip`. With `partial`, the state after each
    epoch is saved there, and one saved with the same settings and clips is resumed from (any
    other is ignored and overwritten). With `cache` (a frozen backbone), only the temporal head
    and classifier train, on cached per-frame features.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    if _frozen(model) and cache is None:
        raise RecognitionError(f"{model.name}: a frozen-backbone model trains on cached features; pass a cache")
    loader = _loader(records, rc, train=True, seed=seed, cache=cache)
    forward = model if cache is None else model.classify
    params = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = len(loader)
    total = rc.epochs * steps_per_epoch
    warmup = min(total, round(rc.warmup_epochs * steps_per_epoch))
    opt = torch.optim.SGD(params, lr=rc.lr, momentum=rc.momentum, weight_decay=rc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, warmup))
    history: list[dict] = []
    start = 0
    key = _resume_key(records, rc, seed)
    if partial is not None and partial.is_file():
        state = torch.load(partial, map_location=device, weights_only=False)
        if state.get("key") == key:
            _load_trainable(model, state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history, start = state["history"], state["epoch"]
    torch.manual_seed(seed + start)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(start, rc.epochs):
        loader.dataset.set_epoch(epoch)
        model.train()
        total_seen, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{rc.epochs}", unit="batch", leave=False,
                   disable=None if progress else True)
        for clips, labels in bar:
            clips, labels = clips.to(device), labels.to(device)
            logits = forward(clips)
            loss = loss_fn(logits, labels)
            if not math.isfinite(loss.item()):
                raise RecognitionError(f"{desc}: training diverged (loss {loss.item()}) at epoch {epoch + 1}; "
                                       f"lower recognition.lr (now {rc.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if rc.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, rc.grad_clip)
            opt.step()
            sched.step()
            total_seen += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += loss.item() * len(labels)
            bar.set_postfix(loss=f"{loss_sum / total_seen:.3f}", acc=f"{correct / total_seen:.2f}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / total_seen, "train_acc": correct / total_seen,
                        "lr": opt.param_groups[0]["lr"]})
        if partial is not None:
            _save(partial, {"key": key, "model": trainable_state(model), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "history": history, "epoch": epoch + 1})
    return history


@torch.inference_mode()
def predict(model: DFERBaseline, records: list[ClipRecord], rc: RecognitionConfig, progress: bool = True,
            desc: str = "test", cache: FrameFeatureCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) with test-time sampling (the middle frame of each segment); through the
    feature cache when given (same logits as the full model, computed once per clip)."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    model.eval()
    forward = model if cache is None else model.classify
    y_true, y_pred = [], []
    for clips, labels in tqdm(_loader(records, rc, train=False, seed=0, cache=cache), desc=desc, unit="batch",
                              leave=False, disable=None if progress else True):
        y_pred.append(forward(clips.to(device)).argmax(1).cpu().numpy())
        y_true.append(labels.numpy())
    return np.concatenate(y_true), np.concatenate(y_pred)


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """WAR/UAR/per-class recall, AR-<class> by name, and the confusion matrix (lists, JSON-ready)."""
    scores = war_uar(y_true, y_pred, NUM_CLASSES)
    scores["ar"] = {name: r for name, r in zip(EMOTIONS, scores["per_class_recall"])}
    scores["confusion_matrix"] = confusion_matrix(y_true, y_pred, NUM_CLASSES).tolist()
    scores["num_test"] = int(len(y_true))
    return scores


def save_checkpoint(path: Path, model: DFERBaseline, rc: RecognitionConfig, meta: dict) -> Path:
    _save(path, {"format": CHECKPOINT_FORMAT, "model": model.name, "state_dict": trainable_state(model),
                 "num_classes": NUM_CLASSES, "hidden": rc.hidden, "num_segments": rc.num_segments,
                 "image_size": rc.image_size, "class_names": list(EMOTIONS), **meta})
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DFERBaseline, dict]:
    """A trained baseline and its metadata (model, num_segments, image_size, fold, variant, ...)."""
    path = Path(path)
    if not path.is_file():
        raise RecognitionError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many types for foreign files
        raise RecognitionError(f"{path}: not a recognition checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RecognitionError(f"{path}: not a recognition checkpoint (format {CHECKPOINT_FORMAT} expected)")
    if ckpt.get("class_names") != list(EMOTIONS):
        raise RecognitionError(f"{path}: trained on classes {ckpt.get('class_names')}, expected {EMOTIONS}")
    # A frozen backbone is not in the checkpoint: its ImageNet weights are reloaded (the recorded
    # file when it exists here, else the default); an end-to-end backbone comes from the state dict.
    recorded = ckpt.get("pretrained")
    model = build_model(ckpt["model"], ckpt["num_classes"], ckpt["hidden"], ckpt["num_segments"],
                        pretrained=recorded if recorded and Path(recorded).is_file() else None)
    _load_trainable(model, ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval(), meta


def unit_name(model_name: str, fold: int | None, variant: str, seed: int = 0) -> str:
    where = f"_fold{fold}" if fold is not None else ""
    return f"{model_name}{where}_seed{seed}_{variant}"


def new_model(model_name: str, rc: RecognitionConfig) -> DFERBaseline:
    """A freshly initialised `model_name` (its backbone's pretrained weights loaded) on `rc.device`."""
    if model_name not in MODELS:
        raise RecognitionError(f"unknown recognition model {model_name!r}: expected one of {', '.join(MODELS)}")
    return build_model(model_name, NUM_CLASSES, rc.hidden, rc.num_segments,
                       pretrained=rc.pretrained.get(MODELS[model_name][0])).to(resolve_device(rc.device))


def unit_inputs(model_name: str, train_records: list[ClipRecord], test_records: list[ClipRecord],
                rc: RecognitionConfig, seed: int) -> str:
    """A digest of what a unit's scores depend on. A finished unit is reused only when it matches,
    so a rerun after the generated clips, the filter, the augmentation counts or a training setting
    changed trains the unit again instead of reporting the old scores."""
    def clips(records: list[ClipRecord]) -> list:
        try:
            return [(r.clip_id, r.label, source_signature(r.source)) for r in records]
        except VideoReadError as exc:
            raise RecognitionError(str(exc)) from None

    weights = rc.pretrained.get(MODELS[model_name][0]) if model_name in MODELS else None  # unknown: new_model says so
    key = {"model": model_name, "pretrained": None if weights is None else str(weights),
           **_resume_key(train_records, rc, seed), "train": clips(train_records), "test": clips(test_records)}
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()


def train_and_evaluate(model_name: str, train_records: list[ClipRecord], test_records: list[ClipRecord],
                       rc: RecognitionConfig, out_dir: str | os.PathLike, *, fold: int | None, variant: str,
                       seed: int = 0, progress: bool = True) -> dict:
    """Train `model_name` on `train_records`, score it on `test_records`; resumable (module doc)."""
    out_dir = Path(out_dir)
    name = unit_name(model_name, fold, variant, seed)
    store = JsonlStore(out_dir / "results.jsonl", key="unit")
    if not test_records:
        raise RecognitionError(f"{name}: the test split is empty")
    inputs = unit_inputs(model_name, train_records, test_records, rc, seed)
    if name in store and store.records[name].get("inputs") == inputs:
        return store.records[name]
    torch.manual_seed(seed)
    model = new_model(model_name, rc)
    backbone = MODELS[model_name][0]
    partial = out_dir / "checkpoints" / f"{name}.partial.pt"
    cache = feature_cache(model, rc, out_dir)
    if cache is not None:
        cache.fill(train_records + test_records, progress=progress, desc=f"{name} frame features")
    with one_thread() if cache is not None else nullcontext():
        history = train_model(model, train_records, rc, seed=seed, partial=partial, progress=progress, desc=name,
                              cache=cache)
        y_true, y_pred = predict(model, test_records, rc, progress=progress, desc=f"{name} test", cache=cache)
    counts = Counter(r.label for r in train_records)
    weights = rc.pretrained.get(backbone) or default_backbone_weights(backbone)
    checkpoint = save_checkpoint(out_dir / "checkpoints" / f"{name}.pt", model, rc,
                                 {"fold": fold, "variant": variant, "seed": seed,
                                  "pretrained": None if weights is None else str(weights)})
    row = {"unit": name, "inputs": inputs, "model": model_name, "fold": fold, "variant": variant, "seed": seed,
           **score(y_true, y_pred), "train_counts": [counts.get(i, 0) for i in range(NUM_CLASSES)],
           "history": history, "checkpoint": str(checkpoint),
           "pretrained": None if weights is None else str(weights)}
    store.append(row)
    partial.unlink(missing_ok=True)
    return row
