"""Face detection and 68-point landmarks from models that ship inside packages.

- Haar cascade: OpenCV 4.x ships `haarcascade_frontalface_default.xml` (OpenCV 5 ships none).
- Landmarks: dlib's frontal HOG detector + the 68-point iBUG shape predictor shipped in
  `face-recognition-models` (found without importing that package: its __init__ needs
  pkg_resources, which setuptools >= 81 removed).
Both are loaded once per process and cached.

Video mode: in a clip the face moves little between frames, so both detectors can look for a
frame's face near the previous frame's (`near_size` for Haar: only face sizes within
`TRACK_SIZE_RATIO` of the previous one; `near` for dlib: a crop around the previous box,
scaled so the face is `TRACK_FACE_PX` wide). Each falls back to the whole-frame search when
nothing is found there, so a frame without a face is still searched in full. The reward scorer
uses it (`reward.track_faces`); its tolerance against the whole-frame search is tested in
tests/test_ard_rewards.py.
"""
from __future__ import annotations

from argen_ray.errors import ArgenError

import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np


# Haar, video mode: face sides within [previous / ratio, previous * ratio].
TRACK_SIZE_RATIO = 1.2
# dlib, video mode: crop margin around the previous box (in box sides) and the side the box is
# scaled to (dlib's HOG window is 80 px, so the face stays above it at the detector's first level).
TRACK_MARGIN = 0.3
TRACK_FACE_PX = 100


class FaceModelError(ArgenError, RuntimeError):
    """A packaged face model is missing; the message says which package provides it."""


@lru_cache(maxsize=None)
def haar_cascade(name: str = "haarcascade_frontalface_default.xml"):
    import cv2

    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise FaceModelError("OpenCV without Haar cascades: install opencv-python-headless 4.x (OpenCV 5 ships none)")
    path = Path(cv2.data.haarcascades) / name
    if not path.is_file():
        raise FaceModelError(f"Haar cascade {path} not found in the OpenCV package")
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FaceModelError(f"Haar cascade {path} failed to load")
    return cascade


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB/gray uint8 image -> 8-bit gray."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 2:
        return img.astype(np.uint8, copy=False)
    if img.ndim == 3 and img.shape[-1] == 3:
        return cv2.cvtColor(img.astype(np.uint8, copy=False), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an HxW or HxWx3 image, got shape {img.shape}")


def haar_faces(image: np.ndarray, scale_factor: float = 1.1, min_neighbors: int = 4,
               min_size_frac: float = 0.15, near_size: float | None = None) -> np.ndarray:
    """Face boxes (x, y, w, h) found by OpenCV's frontal Haar cascade, largest first.

    `near_size`: only look for faces whose side is within `TRACK_SIZE_RATIO` of it (video mode:
    the previous frame's face); the cascade then scans a few pyramid levels instead of all.
    """
    gray = to_gray(image)
    min_side = max(12, int(min(gray.shape) * min_size_frac))
    cascade = haar_cascade()
    if near_size is None:
        boxes = cascade.detectMultiScale(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                         minSize=(min_side, min_side))
        boxes = np.asarray(boxes, dtype=int).reshape(-1, 4)
    else:
        import cv2

        low, high = max(min_side, near_size / TRACK_SIZE_RATIO), near_size * TRACK_SIZE_RATIO
        if high < low:
            return np.zeros((0, 4), dtype=int)
        # Scale the frame so the smallest wanted face fills the cascade's window: the cascade then
        # scans a few small images (OpenCV's own min/max sizes still work on the full frame).
        window = cascade.getOriginalWindowSize()[0]
        scale = min(1.0, window / low)
        small = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale))),
                           interpolation=cv2.INTER_LINEAR) if scale < 1.0 else gray
        top = max(window, int(np.ceil(high * scale)))
        found = cascade.detectMultiScale(small, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                         minSize=(window, window), maxSize=(top, top))
        boxes = np.round(np.asarray(found, dtype=float).reshape(-1, 4) / scale).astype(int)
    if len(boxes):
        boxes = boxes[np.argsort(-(boxes[:, 2] * boxes[:, 3]))]
    return boxes


def shape_predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError("package face-recognition-models is not installed (it ships dlib's 68-point model)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise FaceModelError(f"dlib 68-point model missing at {path}")
    return path


# dlib's detector and shape predictor keep scratch state: one process-wide pair used from several
# threads at once (Serve's ingress runs sync handlers in a thread pool) corrupted the heap
# ("free(): corrupted unsorted chunks", SIGABRT) under a concurrent request mix. Calls take turns.
_DLIB_LOCK = threading.Lock()


@lru_cache(maxsize=None)
def _dlib_models():
    try:
        import dlib
    except ImportError as exc:
        raise FaceModelError("dlib is not installed (package dlib-bin)") from exc
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))


@dataclass
class Landmarks:
    """68 iBUG landmarks (x, y) in pixels and the face box (left, top, right, bottom)."""

    points: np.ndarray  # (68, 2) float32
    box: tuple[int, int, int, int]
    score: float


def _detect_near(detector, img: np.ndarray, box: tuple[float, float, float, float]):
    """The best HOG face box in a crop around `box` (left, top, right, bottom), scaled so the box
    is TRACK_FACE_PX wide; (dlib.rectangle in `img` coordinates, score), or (None, None)."""
    import cv2
    import dlib

    left, top, right, bottom = box
    side = max(right - left, bottom - top, 1.0)
    margin = side * TRACK_MARGIN
    x0, y0 = max(0, int(left - margin)), max(0, int(top - margin))
    x1, y1 = min(img.shape[1], int(np.ceil(right + margin))), min(img.shape[0], int(np.ceil(bottom + margin)))
    crop = img[y0:y1, x0:x1]
    if min(crop.shape[:2]) < 8:
        return None, None
    scale = min(1.0, TRACK_FACE_PX / side)
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    with _DLIB_LOCK:
        rects, scores, _ = detector.run(np.ascontiguousarray(crop), 0, 0.0)
    if len(rects) == 0:
        return None, None
    best = int(np.argmax(scores))
    r = rects[best]
    return dlib.rectangle(round(r.left() / scale) + x0, round(r.top() / scale) + y0,
                          round(r.right() / scale) + x0, round(r.bottom() / scale) + y0), float(scores[best])


def detect_landmarks(image: np.ndarray, near: tuple | None = None) -> Landmarks | None:
    """68-point landmarks of the most confident face, or None when no face is found.

    Upsample 0 and the top-scoring box: with upsample 1 dlib adds weak false boxes (shared notes).
    Small images (< 160 px) are upscaled first so the HOG detector can see the face.
    `near`: the previous frame's face box (video mode): the face is looked for in a crop around
    it first, and in the whole image only when that finds none.
    """
    detector, predictor = _dlib_models()
    img = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    scale = 1.0
    short = min(img.shape[:2])
    if short < 160:
        import cv2

        scale = 160.0 / short
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                         interpolation=cv2.INTER_LINEAR)
    rect = None
    if near is not None:
        rect, score = _detect_near(detector, img, tuple(v * scale for v in near))
    if rect is None:
        with _DLIB_LOCK:
            rects, scores, _ = detector.run(img, 0, 0.0)
        if len(rects) == 0:
            return None
        best = int(np.argmax(scores))
        rect, score = rects[best], float(scores[best])
    with _DLIB_LOCK:
        shape = predictor(img, rect)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32) / scale
    box = tuple(int(round(v / scale)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
    return Landmarks(points=pts, box=box, score=score)
