"""Face detection and 68-point landmarks from models that ship inside packages.

- Haar cascade: OpenCV 4.x ships `haarcascade_frontalface_default.xml` (OpenCV 5 ships none).
- Landmarks: dlib's frontal HOG detector + the 68-point iBUG shape predictor shipped in
  `face-recognition-models` (found without importing that package: its __init__ needs
  pkg_resources, which setuptools >= 81 removed).
Both are loaded once per process and cached.
"""
from __future__ import annotations

from argen_ray.errors import ArgenError

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np


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
               min_size_frac: float = 0.15) -> np.ndarray:
    """Face boxes (x, y, w, h) found by OpenCV's frontal Haar cascade, largest first."""
    gray = to_gray(image)
    min_side = max(12, int(min(gray.shape) * min_size_frac))
    boxes = haar_cascade().detectMultiScale(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                            minSize=(min_side, min_side))
    boxes = np.asarray(boxes, dtype=int).reshape(-1, 4)
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


def detect_landmarks(image: np.ndarray) -> Landmarks | None:
    """68-point landmarks of the most confident face, or None when no face is found.

    Upsample 0 and the top-scoring box: with upsample 1 dlib adds weak false boxes (shared notes).
    Small images (< 160 px) are upscaled first so the HOG detector can see the face.
    """
    import dlib

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
    rects, scores, _ = detector.run(img, 0, 0.0)
    if len(rects) == 0:
        return None
    best = int(np.argmax(scores))
    rect = rects[best]
    shape = predictor(img, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32) / scale
    box = tuple(int(round(v / scale)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
    return Landmarks(points=pts, box=box, score=float(scores[best]))
