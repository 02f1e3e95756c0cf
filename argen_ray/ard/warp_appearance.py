"""Expression appearance the warp cannot make by moving pixels, learned from the dataset's training clips.

A piecewise-affine warp only moves the reference's pixels: it cannot show what real expressions
change in the skin's appearance (forehead lines over raised brows, a wrinkled nose, the shading
of a raised cheek, teeth in an opened mouth). This module learns that change per class from the
real TRAINING clips and puts it on any warped face, as an expression ratio image (Liu, Shan &
Zhang 2001, "Expressive expression mapping with ratio images"):

Learning (`learn_appearance`), per training clip of a class:
1. frame 0 (the clip's start, taken as its neutral face) and the apex frame (largest mean landmark
   displacement from frame 0, head pose removed: `dynamics.expression_curve`) are each moved by
   the similarity of their own eye corners onto a canvas in face-frame units (inter-ocular
   distance = `pixels_per_iod` canvas pixels), so head position, size and roll are removed;
2. frame 0 is warped to the apex landmarks by the warp backend itself (`FaceWarper.render`):
   what the warp shows at the apex geometry;
3. the log ratio `log(apex + EPS) - log(warped + EPS)` per colour channel is what the warp
   misses, in the apex's geometry; it is warped onto the class's canonical apex shape (the mean
   apex landmarks of its training clips);
4. with d_i the clip's apex displacement (IOD units), the class's unit map is the least-squares
   slope U = sum_i d_i r_i / sum_i d_i^2 (log ratio per unit of displacement): appearance change
   grows linearly with how far the face has moved, and is zero at neutral.

Applying (`AppearanceTransfer.apply`), per warped keyframe: U is warped from the canonical shape
to the keyframe's target landmarks, mapped into the image through the reference's face frame,
and the frame is multiplied by exp(d U), d = the keyframe's mean landmark displacement from the
reference. So a neutral schedule (d = 0) leaves the frame exactly as the warp made it, a stronger
expression changes more, and nothing comes from the test split or from the demo renderer's
constants: only from the training clips' pixels.

Written by the run's data stage to `<run_dir>/data/appearance.npz` (`generator.warp.appearance`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from argen_ray.errors import ArgenError

if TYPE_CHECKING:
    from argen_ray.data.records import ClipRecord, Dataset

APPEARANCE_VERSION = 1
EPS = 8.0                       # grey levels added before the log: dark pixels (the mouth cavity) stay bounded
MAX_LOG_RATIO = 1.5             # |d U| is clipped here: at most a 4.5x brightening or darkening
CANVAS_X = (-2.0, 2.0)          # canvas extent in face-frame units (IOD 1, origin between the eyes)
CANVAS_Y = (-1.3, 2.5)
MIN_DISPLACEMENT = 1e-3         # clips that do not move carry no appearance change
MAX_CLIPS_PER_CLASS = 400       # the mean of this many clips is settled; memory stays bounded on large datasets


class AppearanceError(ArgenError, ValueError):
    """An appearance model cannot be learned or read; the message names the file or clip."""


class Canvas:
    """The face-frame canvas: image <-> canvas similarity maps of a face's eye corners."""

    def __init__(self, pixels_per_iod: int):
        self.p = int(pixels_per_iod)
        self.size = (round((CANVAS_X[1] - CANVAS_X[0]) * self.p), round((CANVAS_Y[1] - CANVAS_Y[0]) * self.p))

    def points(self, face_points: np.ndarray) -> np.ndarray:
        """Face-frame points -> canvas pixels."""
        return (np.asarray(face_points, np.float64) - [CANVAS_X[0], CANVAS_Y[0]]) * self.p

    def matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """2x3 affine map of image pixels onto the canvas, by the landmarks' face frame."""
        from argen_ray.data.demo.au_model import face_frame

        origin, ex, ey, iod = face_frame(landmarks)
        s = self.p / iod
        return np.array([[s * ex[0], s * ex[1], -s * origin @ ex - self.p * CANVAS_X[0]],
                         [s * ey[0], s * ey[1], -s * origin @ ey - self.p * CANVAS_Y[0]]], np.float64)

    def to_canvas(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.warpAffine(image, self.matrix(landmarks), self.size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def to_image(self, canvas_image: np.ndarray, landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        import cv2

        return cv2.warpAffine(canvas_image, self.matrix(landmarks), (shape[1], shape[0]),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)


def displacement(reference: np.ndarray, target: np.ndarray) -> float:
    """Mean landmark displacement of `target` from `reference`, head pose removed (IOD units)."""
    from argen_ray.data.demo.au_model import to_face_frame

    return float(np.linalg.norm(to_face_frame(target) - to_face_frame(reference), axis=1).mean())


def log_ratio(image: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(image, np.float32) + EPS)


def apex_pair(frames: np.ndarray, landmarks: np.ndarray) -> tuple | None:
    """(frame 0, apex frame, their landmarks, apex displacement) of one clip; None when it does not
    move. The apex is the frame of largest mean landmark displacement from frame 0, head pose removed."""
    from argen_ray.data.dynamics import expression_curve

    curve = expression_curve(landmarks)
    apex = int(np.argmax(curve))
    if curve[apex] < MIN_DISPLACEMENT:
        return None
    return (np.ascontiguousarray(frames[0]), np.ascontiguousarray(frames[apex]),
            np.asarray(landmarks[0], np.float64), np.asarray(landmarks[apex], np.float64), float(curve[apex]))


def clip_residual(pair: tuple, canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """(log ratio of the apex frame over frame 0 warped to the apex landmarks, apex landmarks), both
    on the canvas (module doc, steps 1-3 before the canonical shape)."""
    from argen_ray.ard.warp import FaceWarper
    from argen_ray.data.demo.au_model import to_face_frame

    start, apex, l0, la, _ = pair
    c0, ca = canvas.points(to_face_frame(l0)), canvas.points(to_face_frame(la))
    warped = FaceWarper(canvas.to_canvas(start, l0), c0).render(ca)
    return log_ratio(canvas.to_canvas(apex, la)) - log_ratio(warped), ca


def learn_appearance(pairs: Iterable[tuple[str, tuple]], pixels_per_iod: int | None = None) -> dict:
    """The appearance model from (label, `apex_pair`) of real training clips (module doc):
    {"pixels_per_iod", "classes": {label: {"unit": (H, W, 3) log ratio per IOD of displacement,
    "shape": (68, 2) canonical apex landmarks on the canvas, "clips", "median_displacement"}}}.
    The canvas resolution defaults to the clips' median inter-ocular distance in pixels."""
    from argen_ray.ard.warp import FaceWarper
    from argen_ray.data.demo.au_model import face_frame

    by_class: dict[str, list] = {}
    for label, pair in pairs:
        by_class.setdefault(label, []).append(pair)
    if not by_class:
        return {"version": APPEARANCE_VERSION, "pixels_per_iod": 0, "classes": {}}
    if pixels_per_iod is None:
        iods = [face_frame(p[2])[3] for rows in by_class.values() for p in rows]
        pixels_per_iod = int(np.clip(round(float(np.median(iods))), 12, 96))
    canvas = Canvas(pixels_per_iod)
    classes = {}
    for label, rows in sorted(by_class.items()):
        residuals = [clip_residual(p, canvas) for p in rows]
        shape = np.mean([ca for _, ca in residuals], axis=0)
        num = np.zeros((canvas.size[1], canvas.size[0], 3), np.float64)
        den = 0.0
        for (r, ca), p in zip(residuals, rows):  # each clip's residual onto the class's canonical apex shape
            num += p[4] * FaceWarper(r, ca).warp(shape)
            den += p[4] ** 2
        classes[label] = {"unit": (num / den).astype(np.float32), "shape": shape, "clips": len(rows),
                          "median_displacement": round(float(np.median([p[4] for p in rows])), 5)}
    return {"version": APPEARANCE_VERSION, "pixels_per_iod": pixels_per_iod, "classes": classes}


def measure_dataset_appearance(dataset: "Dataset", landmarks_of: Callable | None = None, progress: bool = False,
                               classes: Iterable[str] | None = None) -> dict:
    """The appearance model of the dataset's TRAINING clips (every clip when it has no train split);
    test clips are never read. `classes`: only these (default every class); at most
    `MAX_CLIPS_PER_CLASS` clips each, in record order."""
    from tqdm.auto import tqdm

    from argen_ray.data.dynamics import record_landmarks
    from argen_ray.data.labels import EMOTIONS
    from argen_ray.data.video import VideoReadError, read_video

    landmarks_of = landmarks_of or record_landmarks
    wanted = set(classes) if classes is not None else None
    records = [r for r in (dataset.split("train") or dataset.records) if wanted is None or EMOTIONS[r.label] in wanted]
    pairs, taken = [], {}
    for record in tqdm(records, desc="expression appearance", unit="clip", disable=not progress):
        label = EMOTIONS[record.label]
        if taken.get(label, 0) >= MAX_CLIPS_PER_CLASS:
            continue
        try:
            frames = read_video(record.source)
        except VideoReadError:
            continue
        points = landmarks_of(record, frames) if len(frames) >= 2 else None
        pair = None if points is None else apex_pair(frames, points)
        if pair is not None:
            pairs.append((label, pair))
            taken[label] = taken.get(label, 0) + 1
    return learn_appearance(pairs) | {"split": "train" if dataset.split("train") else "all", "dataset": dataset.kind}


def write_appearance(model: dict, path: str | os.PathLike) -> Path:
    """The model as one .npz (unit maps and shapes as arrays, the rest as JSON), atomically."""
    import io

    from argen_ray.io import atomic_write_bytes

    arrays = {}
    meta = {k: v for k, v in model.items() if k != "classes"}
    meta["classes"] = {}
    for label, entry in model["classes"].items():
        arrays[f"{label}__unit"] = entry["unit"]
        arrays[f"{label}__shape"] = np.asarray(entry["shape"], np.float64)
        meta["classes"][label] = {k: v for k, v in entry.items() if k not in ("unit", "shape")}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), **arrays)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def read_appearance(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        with np.load(p) as data:
            meta = json.loads(str(data["meta"]))
            for label, entry in meta.get("classes", {}).items():
                entry["unit"] = data[f"{label}__unit"].astype(np.float32)
                entry["shape"] = data[f"{label}__shape"]
    except (OSError, KeyError, ValueError) as exc:
        raise AppearanceError(f"{p}: cannot read the appearance model ({exc}); relearn it with "
                              "`argen-ray run --from data`") from None
    if meta.get("version") != APPEARANCE_VERSION:
        raise AppearanceError(f"{p}: not an appearance model of version {APPEARANCE_VERSION}")
    return meta


class AppearanceTransfer:
    """Puts a class's learned appearance change on warped keyframes of one reference face."""

    def __init__(self, model: dict):
        self.model = model
        self.canvas = Canvas(model["pixels_per_iod"]) if model.get("pixels_per_iod") else None
        self._warpers: dict[str, object] = {}

    def covers(self, emotion: str | None) -> bool:
        return self.canvas is not None and emotion in self.model["classes"]

    def _warper(self, emotion: str):
        from argen_ray.ard.warp import FaceWarper

        if emotion not in self._warpers:
            entry = self.model["classes"][emotion]
            self._warpers[emotion] = FaceWarper(entry["unit"], entry["shape"])
        return self._warpers[emotion]

    def ratio(self, emotion: str, reference: np.ndarray, target: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(H, W, 3) log ratio for a keyframe whose landmarks moved from `reference` to `target`."""
        d = displacement(reference, target)
        if d <= 0 or not self.covers(emotion):
            return np.zeros((*shape, 3), np.float32)
        # The target in canvas pixels, placed by the reference's face frame (the frame the ratio
        # image goes back through).
        m = self.canvas.matrix(reference)
        unit = self._warper(emotion).warp(np.asarray(target, np.float64) @ m[:, :2].T + m[:, 2])
        return np.clip(d * self.canvas.to_image(unit, reference, shape), -MAX_LOG_RATIO, MAX_LOG_RATIO)

    def apply(self, frame: np.ndarray, emotion: str | None, reference: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The keyframe times its learned ratio image (unchanged at the reference's own landmarks)."""
        if not self.covers(emotion):
            return frame
        r = self.ratio(emotion, reference, target, frame.shape[:2])
        if not r.any():
            return frame
        out = (frame.astype(np.float32) + EPS) * np.exp(r) - EPS
        return np.clip(np.round(out), 0, 255).astype(np.uint8)


__all__ = ["AppearanceError", "AppearanceTransfer", "Canvas", "apex_pair", "clip_residual", "displacement", "learn_appearance",
           "measure_dataset_appearance", "read_appearance", "write_appearance"]
