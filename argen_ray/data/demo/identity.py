"""Demo identities: a neutral 68-point face template plus the looks the renderer needs.

Each identity varies face shape (width, jaw squareness, chin length), eye spacing and size,
brow arch, nose and mouth proportions, lip fullness, skin tone, hair colour and style, iris
colour, clothing and background. The template is in face-frame units (see `au_model`):
eye centres at (-0.5, 0) and (0.5, 0), so IOD = 1 by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Skin tones from light to dark (sRGB 0-1); identities interpolate between neighbours.
_SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.90, 0.72, 0.60], [0.80, 0.60, 0.46], [0.68, 0.48, 0.34],
    [0.55, 0.37, 0.25], [0.42, 0.28, 0.19],
])
_HAIR_COLOURS = np.array([
    [0.08, 0.06, 0.05], [0.22, 0.14, 0.08], [0.40, 0.26, 0.14], [0.70, 0.56, 0.34],
    [0.48, 0.20, 0.10], [0.55, 0.55, 0.55],
])
_IRIS_COLOURS = np.array([[0.25, 0.15, 0.08], [0.18, 0.28, 0.45], [0.25, 0.35, 0.22], [0.12, 0.08, 0.05]])
HAIR_STYLES = ("short", "long", "fringe", "receding")


@dataclass(frozen=True)
class Identity:
    """One synthetic person: neutral geometry and colours. `neutral` is (68, 2) face units."""

    index: int
    neutral: np.ndarray = field(repr=False)
    skin: tuple[float, float, float]
    lips: tuple[float, float, float]
    hair: tuple[float, float, float]
    brows: tuple[float, float, float]
    iris: tuple[float, float, float]
    clothing: tuple[float, float, float]
    background: tuple[float, float, float]
    hair_style: str
    brow_thickness: float  # IOD units
    light: float           # -1..1: side the key light comes from (image left .. right)
    texture_seed: int


def _arc(start: np.ndarray, stop: np.ndarray, n: int, bulge: float) -> np.ndarray:
    """n points from start to stop, bowed upwards by `bulge` at the middle (y down)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = start + t * (stop - start)
    pts[:, 1] -= bulge * np.sin(np.pi * t[:, 0])
    return pts


def neutral_template(face_width: float = 1.05, jaw_square: float = 3.0, chin: float = 1.65,
                     eye_width: float = 0.38, eye_open: float = 0.12, canthal_tilt: float = 0.02,
                     brow_height: float = 0.26, brow_arch: float = 0.10, nose_length: float = 0.56,
                     nose_width: float = 0.22, mouth_y: float = 1.0, mouth_width: float = 0.92,
                     upper_lip: float = 0.11, lower_lip: float = 0.14) -> np.ndarray:
    """A neutral frontal face's 68 iBUG landmarks in face-frame units (IOD = 1)."""
    pts = np.zeros((68, 2))
    # Jaw 0-16: a superellipse from the right ear (image left) under the chin to the left ear,
    # with the 17 points evenly spaced along it as annotators place them.
    phi = np.linspace(0.0, np.pi, 400)
    expo = 2.0 / jaw_square
    c, s = np.cos(phi), np.sin(phi)
    curve = np.stack([-face_width * np.sign(c) * np.abs(c) ** expo,
                      0.05 + (chin - 0.05) * np.sign(s) * np.abs(s) ** expo], axis=1)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(curve, axis=0).T))])
    even = np.linspace(0.0, arc[-1], 17)
    pts[0:17] = np.stack([np.interp(even, arc, curve[:, 0]), np.interp(even, arc, curve[:, 1])], axis=1)
    # Brows 17-21 (outer -> inner, image left) and 22-26 (inner -> outer, image right).
    outer = np.array([-0.92, -brow_height + 0.07])
    inner = np.array([-0.20, -brow_height + 0.01])
    right_brow = _arc(outer, inner, 5, brow_arch)
    pts[17:22] = right_brow
    pts[22:27] = right_brow[::-1] * [-1, 1]
    # Nose: bridge 27-30 from between the eyes to the tip, nostril base 31-35.
    pts[27:31, 1] = np.linspace(0.02, nose_length, 4)
    base_y = nose_length + 0.09
    pts[31:36, 0] = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) * nose_width
    pts[31:36, 1] = base_y + np.array([0.0, 0.035, 0.05, 0.035, 0.0])
    # Eyes: 36 outer, 37-38 upper lid, 39 inner, 40-41 lower lid; 42-47 mirror it.
    half, up, low = eye_width / 2, 0.6 * eye_open, 0.4 * eye_open
    right_eye = np.array([
        [-half, -canthal_tilt], [-half / 3, -up], [half / 3, -up], [half, 0.0], [half / 3, low], [-half / 3, low],
    ]) + [-0.5, 0.0]
    pts[36:42] = right_eye
    pts[42:48] = right_eye[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    # Outer lip 48-59 (corner, upper lip to the other corner, lower lip back), inner lip 60-67.
    w = mouth_width / 2
    ux = np.array([-1.0, -0.66, -0.28, 0.0, 0.28, 0.66, 1.0]) * w
    uy = mouth_y - upper_lip * np.array([0.0, 0.65, 1.0, 0.82, 1.0, 0.65, 0.0])
    lx = np.array([0.66, 0.28, 0.0, -0.28, -0.66]) * w
    ly = mouth_y + lower_lip * np.array([0.7, 0.97, 1.0, 0.97, 0.7])
    pts[48:55] = np.stack([ux, uy], axis=1)
    pts[55:60] = np.stack([lx, ly], axis=1)
    gap = 0.004
    pts[60:68] = np.array([
        [-0.86 * w, mouth_y], [-0.28 * w, mouth_y - gap], [0.0, mouth_y - gap], [0.28 * w, mouth_y - gap],
        [0.86 * w, mouth_y], [0.28 * w, mouth_y + gap], [0.0, mouth_y + gap], [-0.28 * w, mouth_y + gap],
    ])
    return pts


def _colour(table: np.ndarray, u: float) -> np.ndarray:
    """Interpolate a colour table at u in [0, 1]."""
    pos = u * (len(table) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(table) - 1)
    return table[lo] + (pos - lo) * (table[hi] - table[lo])


def sample_identity(rng: np.random.Generator, index: int) -> Identity:
    """Draw one identity; all randomness comes from `rng`."""
    u = rng.uniform
    neutral = neutral_template(
        face_width=u(0.95, 1.15), jaw_square=u(2.4, 3.6), chin=u(1.52, 1.80),
        eye_width=u(0.34, 0.42), eye_open=u(0.10, 0.14), canthal_tilt=u(-0.01, 0.05),
        brow_height=u(0.22, 0.32), brow_arch=u(0.05, 0.13), nose_length=u(0.50, 0.62),
        nose_width=u(0.19, 0.26), mouth_y=u(0.95, 1.08), mouth_width=u(0.82, 1.02),
        upper_lip=u(0.08, 0.13), lower_lip=u(0.11, 0.17))
    skin = _colour(_SKIN_TONES, u(0.0, 1.0))
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.85, 1.1)
    # Brows stay darker than the skin even for fair hair, as real brows do.
    brows = np.minimum(hair, skin * 0.45)
    lips = skin * np.array([0.86, 0.62, 0.62]) * u(0.9, 1.05)
    background = rng.uniform(0.25, 0.85, size=3)
    clothing = rng.uniform(0.1, 0.8, size=3)
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]

    def rgb(c):
        return tuple(float(v) for v in np.clip(c, 0.0, 1.0))

    return Identity(
        index=index, neutral=neutral, skin=rgb(skin), lips=rgb(lips), hair=rgb(hair), brows=rgb(brows),
        iris=rgb(iris), clothing=rgb(clothing), background=rgb(background),
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))], brow_thickness=float(u(0.06, 0.10)),
        light=float(u(-0.6, 0.6)), texture_seed=int(rng.integers(2**31)))
