"""FACS action units as displacements of the 68 iBUG landmarks.

A linear model: each AU at OpenFace intensity I (0-5) moves a fixed set of landmarks by
`I / 5` times its full-intensity displacement. Displacements live in a *face frame* measured
from the eye corners (36, 39, 42, 45), which no AU moves:

- origin: the midpoint of the two eye centres (each the midpoint of its two corners),
- unit: the inter-ocular distance (IOD) between those centres,
- x: from the subject's right eye to the left eye (image left to right on a frontal face),
- y: perpendicular, pointing down the face.

So the model applies to any frontal face's landmarks at any position, scale and roll: the
demo renderer uses it on its templates, and the CPU warp generator can use it on landmarks
detected in a real reference image. After adding the displacements, lids and lips are kept
from crossing (a blink closes the eye; a chin raise cannot push the lower lip through the
upper one).
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from argen_ray.errors import ArgenError

# OpenFace 2.x intensity outputs, in its column order.
OPENFACE_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
# AUs the model moves landmarks for. AU16 (lower lip depressor, part of a disgust prototype)
# has no OpenFace output: it shapes the rendered face but never appears in a CSV.
MODELLED_AUS: tuple[int, ...] = tuple(sorted(OPENFACE_AUS + (16,)))
MAX_INTENSITY = 5.0

# Left/right side of each iBUG point: -1 = subject's right (image left), +1 = image right,
# 0 = on the midline. Displacement tables give x as "outward" (away from the midline).
SIDE = np.array(
    [-1] * 8 + [0] + [1] * 8                      # 0-16 jaw
    + [-1] * 5 + [1] * 5                          # 17-26 brows
    + [0] * 4 + [-1, -1, 0, 1, 1]                 # 27-35 nose
    + [-1] * 6 + [1] * 6                          # 36-47 eyes
    + [-1, -1, -1, 0, 1, 1, 1, 1, 1, 0, -1, -1]  # 48-59 outer lip
    + [-1, -1, 0, 1, 1, 1, 0, -1],                # 60-67 inner lip
    dtype=np.float64)

# Pairs (upper, lower) that may touch but not cross: eyelids, then inner lips.
_LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))

_CORNERS = (36, 39, 42, 45)


class AUModelError(ArgenError, ValueError):
    """An AU dictionary or a landmark array the model cannot use; the message says which."""


# AU -> rows of (iBUG points, outward dx, dy) at intensity 5, in IOD units (dy < 0 is up).
# Magnitudes follow FACS appearance changes, sized so apex expressions are plainly visible.
_DISPLACEMENTS: dict[int, tuple[tuple[tuple[int, ...], float, float], ...]] = {
    1: (((21, 22), 0.0, -0.16), ((20, 23), 0.0, -0.12), ((19, 24), 0.0, -0.06), ((18, 25), 0.0, -0.02)),
    2: (((17, 26), 0.0, -0.15), ((18, 25), 0.0, -0.15), ((19, 24), 0.0, -0.10), ((20, 23), 0.0, -0.04)),
    4: (((21, 22), -0.08, 0.13), ((20, 23), -0.05, 0.11), ((19, 24), -0.02, 0.08), ((18, 25), 0.0, 0.06),
        ((17, 26), 0.0, 0.03), ((37, 38, 43, 44), 0.0, 0.025)),
    5: (((37, 38, 43, 44), 0.0, -0.07),),
    6: (((40, 41, 46, 47), 0.0, -0.045), ((37, 38, 43, 44), 0.0, 0.01), ((48, 54), 0.01, -0.02)),
    7: (((40, 41, 46, 47), 0.0, -0.05), ((37, 38, 43, 44), 0.0, 0.02)),
    9: (((31, 35), 0.01, -0.07), ((32, 34), 0.0, -0.07), ((33,), 0.0, -0.06), ((30,), 0.0, -0.035),
        ((29,), 0.0, -0.02), ((21, 22), -0.03, 0.06), ((20, 23), 0.0, 0.035), ((49, 50, 51, 52, 53), 0.0, -0.06),
        ((61, 62, 63), 0.0, -0.05), ((40, 41, 46, 47), 0.0, -0.025)),
    10: (((50, 51, 52), 0.0, -0.12), ((49, 53), 0.0, -0.09), ((61, 62, 63), 0.0, -0.11),
         ((48, 54, 60, 64), 0.0, -0.035), ((31, 32, 33, 34, 35), 0.0, -0.025)),
    12: (((48, 54), 0.13, -0.13), ((60, 64), 0.12, -0.12), ((49, 53), 0.07, -0.06), ((59, 55), 0.07, -0.08),
         ((50, 52), 0.03, -0.02), ((58, 56), 0.03, -0.03), ((61, 63, 65, 67), 0.03, -0.025), ((57, 66), 0.0, -0.005)),
    14: (((48, 54), 0.04, 0.0), ((60, 64), 0.035, 0.0)),
    15: (((48, 54), 0.0, 0.12), ((60, 64), 0.0, 0.11), ((59, 55), 0.0, 0.05), ((49, 53), 0.0, 0.04),
         ((58, 56), 0.0, 0.02)),
    16: (((56, 57, 58), 0.0, 0.10), ((55, 59), 0.0, 0.06), ((65, 66, 67), 0.0, 0.10)),
    17: (((7, 8, 9), 0.0, -0.07), ((6, 10), 0.0, -0.035), ((56, 57, 58), 0.0, -0.07), ((55, 59), 0.0, -0.05),
         ((65, 66, 67), 0.0, -0.035), ((48, 54), 0.0, 0.03)),
    20: (((48, 54), 0.14, 0.03), ((60, 64), 0.13, 0.03), ((49, 53, 59, 55), 0.07, 0.015),
         ((50, 52, 58, 56), 0.03, 0.0), ((50, 51, 52), 0.0, 0.015), ((56, 57, 58), 0.0, -0.015)),
    23: (((48, 54), -0.05, 0.0), ((60, 64), -0.05, 0.0), ((49, 50, 51, 52, 53), 0.0, 0.04),
         ((55, 56, 57, 58, 59), 0.0, -0.045)),
    25: (((65, 66, 67), 0.0, 0.08), ((61, 62, 63), 0.0, -0.015), ((55, 56, 58, 59), 0.0, 0.06), ((57,), 0.0, 0.07)),
    26: (((3, 13), 0.0, 0.05), ((4, 12), 0.0, 0.10), ((5, 11), 0.0, 0.16), ((6, 10), 0.0, 0.22),
         ((7, 9), 0.0, 0.26), ((8,), 0.0, 0.27), ((55, 59), 0.0, 0.24), ((56, 57, 58), 0.0, 0.27),
         ((65, 66, 67), 0.0, 0.26), ((48, 54, 60, 64), -0.03, 0.09), ((61, 62, 63), 0.0, -0.01)),
    45: (((37, 38, 43, 44), 0.0, 0.10), ((40, 41, 46, 47), 0.0, -0.01)),
}


def _basis() -> dict[int, np.ndarray]:
    """Per AU, the (68, 2) face-frame displacement at full intensity."""
    basis = {}
    for au, rows in _DISPLACEMENTS.items():
        d = np.zeros((68, 2))
        for points, dx, dy in rows:
            idx = np.array(points)
            d[idx, 0] += dx * SIDE[idx]
            d[idx, 1] += dy
        basis[au] = d
    return basis


AU_BASIS: dict[int, np.ndarray] = _basis()


def au_number(key: int | str) -> int:
    """1, "1", "AU1", "AU01", "AU01_r" -> 1; raises for anything else."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    match = re.fullmatch(r"(?:AU)?0*(\d+)(?:_r)?", str(key).strip(), flags=re.IGNORECASE)
    if not match:
        raise AUModelError(f"AU key {key!r} is not an action unit name (expected e.g. 12, 'AU12' or 'AU12_r')")
    return int(match.group(1))


def check_landmarks(points: np.ndarray, name: str = "landmarks") -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (68, 2):
        raise AUModelError(f"{name}: expected 68 iBUG (x, y) points of shape (68, 2), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise AUModelError(f"{name}: contains NaN or infinite coordinates")
    return pts


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(origin, x axis, y axis, IOD) of the face frame of 68 landmarks (see the module doc)."""
    pts = check_landmarks(points)
    right_eye = (pts[36] + pts[39]) / 2
    left_eye = (pts[42] + pts[45]) / 2
    across = left_eye - right_eye
    iod = float(np.hypot(*across))
    if iod < 1e-6:
        raise AUModelError("landmarks: the two eyes coincide (inter-ocular distance is 0)")
    ex = across / iod
    ey = np.array([-ex[1], ex[0]])
    return (right_eye + left_eye) / 2, ex, ey, iod


def to_face_frame(points: np.ndarray) -> np.ndarray:
    """Landmarks in face-frame units: invariant to image position, scale and roll."""
    origin, ex, ey, iod = face_frame(points)
    rel = check_landmarks(points) - origin
    return np.stack([rel @ ex, rel @ ey], axis=1) / iod


def from_face_frame(face_points: np.ndarray, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray,
                    iod: float) -> np.ndarray:
    """Inverse of `to_face_frame` for a given frame."""
    fp = np.asarray(face_points, dtype=np.float64)
    return origin + iod * (fp[:, :1] * ex + fp[:, 1:] * ey)


def check_intensities(aus: Mapping[int | str, float]) -> dict[int, float]:
    """Validate an AU dict: known AUs, finite intensities on OpenFace's 0-5 scale."""
    out: dict[int, float] = {}
    for key, value in aus.items():
        au = au_number(key)
        if au not in AU_BASIS:
            raise AUModelError(f"AU{au:02d} is not modelled (modelled: {', '.join(f'AU{a:02d}' for a in MODELLED_AUS)})")
        v = float(value)
        if not np.isfinite(v) or v < 0.0 or v > MAX_INTENSITY:
            raise AUModelError(f"AU{au:02d} intensity {value!r} is outside OpenFace's 0-5 scale")
        if au in out:
            raise AUModelError(f"AU{au:02d} is given twice (as {key!r} and another name)")
        out[au] = v
    return out


def au_displacement(aus: Mapping[int | str, float]) -> np.ndarray:
    """(68, 2) face-frame displacement of an AU dict, before the lid/lip constraints."""
    d = np.zeros((68, 2))
    for au, value in check_intensities(aus).items():
        d += (value / MAX_INTENSITY) * AU_BASIS[au]
    return d


def _keep_ordered(face_points: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> None:
    """Where a lower point rose above its upper partner, meet in the middle (in place)."""
    for upper, lower in pairs:
        if face_points[lower, 1] < face_points[upper, 1]:
            mid = (face_points[lower, 1] + face_points[upper, 1]) / 2
            face_points[upper, 1] = face_points[lower, 1] = mid


def au_to_landmarks(neutral_points: np.ndarray, aus: Mapping[int | str, float]) -> np.ndarray:
    """Move a neutral face's 68 landmarks (pixels, iBUG order) by AU intensities (0-5).

    `aus` maps AU numbers or names ("AU12", "AU12_r", 12) to intensities; unlisted AUs are 0.
    Returns (68, 2) float64 landmarks in the same coordinates as `neutral_points`.
    """
    origin, ex, ey, iod = face_frame(neutral_points)
    face = to_face_frame(neutral_points) + au_displacement(aus)
    _keep_ordered(face, _LID_PAIRS)
    _keep_ordered(face, _LIP_PAIRS)
    return from_face_frame(face, origin, ex, ey, iod)
