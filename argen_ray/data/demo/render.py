"""Render a face image from its 68 iBUG landmarks and an identity's looks.

Everything facial is placed from the landmarks passed in, so the landmarks written next to a
frame ARE its geometry: jaw outline, brows, lids, iris, nose and lips follow them exactly;
wrinkles (forehead, glabella, nose, nasolabial folds, cheek and chin creases) deepen with the
landmarks' displacement from the identity's neutral template.

What makes OpenCV's Haar cascade accept these faces (shared notes, measured): an eye band darker
than cheeks and forehead for every skin tone (a blurred eye-socket shadow), eye whites scaled to
the skin's brightness, a large dark iris, soft forehead/cheekbone highlights, sphere shading, nose
side shadows with a bright bridge, and mild blur and noise. The face is drawn at twice the output
size and area-downsampled, which antialiases every edge.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from argen_ray.data.demo.au_model import check_landmarks, face_frame, to_face_frame
from argen_ray.data.demo.identity import Identity
from argen_ray.errors import ArgenError

SUPERSAMPLE = 2
_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices in cv2 drawing calls


class RenderError(ArgenError, ValueError):
    """Arguments the renderer cannot draw; the message names which."""


def _spline(points: np.ndarray, per_segment: int = 8) -> np.ndarray:
    """A Catmull-Rom curve through `points` (open, end points repeated)."""
    p = np.concatenate([points[:1], points, points[-1:]])
    p0, p1, p2, p3 = p[:-3, None], p[1:-2, None], p[2:-1, None], p[3:, None]  # (segments, 1, 2)
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[None, :, None]
    curve = 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                   + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)
    return np.concatenate([curve.reshape(-1, 2), points[-1:]])


@lru_cache(maxsize=4)
def _pixel_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32)
    return xs, ys


class _Mask:
    """A coverage mask (0-1) that is non-zero only inside its box: drawing touches only that box."""

    __slots__ = ("a", "y0", "x0")

    def __init__(self, a: np.ndarray, y0: int, x0: int):
        self.a, self.y0, self.x0 = a, y0, x0

    @property
    def box(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.a.shape[0]), slice(self.x0, self.x0 + self.a.shape[1])

    def __mul__(self, other) -> "_Mask":
        if isinstance(other, _Mask):  # the product lives in the intersection of the boxes
            y0, x0 = max(self.y0, other.y0), max(self.x0, other.x0)
            y1 = min(self.y0 + self.a.shape[0], other.y0 + other.a.shape[0])
            x1 = min(self.x0 + self.a.shape[1], other.x0 + other.a.shape[1])
            y1, x1 = max(y1, y0), max(x1, x0)
            return _Mask(self.a[y0 - self.y0:y1 - self.y0, x0 - self.x0:x1 - self.x0]
                         * other.a[y0 - other.y0:y1 - other.y0, x0 - other.x0:x1 - other.x0], y0, x0)
        if isinstance(other, np.ndarray) and other.ndim == 2:  # a full-canvas field
            return _Mask(self.a * other[self.box], self.y0, self.x0)
        return _Mask(self.a * np.float32(other), self.y0, self.x0)

    __rmul__ = __mul__

    def __pow__(self, p: float) -> "_Mask":
        return _Mask(self.a ** p, self.y0, self.x0)


class _Canvas:
    """A float RGB image at supersampled resolution plus the face frame's per-pixel coordinates."""

    def __init__(self, landmarks: np.ndarray, size: int):
        self.n = size * SUPERSAMPLE
        # Output pixel x maps to supersampled 2x + 0.5 (the centre of its 2x2 block).
        self.origin, self.ex, self.ey, iod = face_frame(landmarks)
        self.origin = self.origin * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2
        self.iod = iod * SUPERSAMPLE
        xs, ys = _pixel_grid(self.n)
        rx, ry = xs - np.float32(self.origin[0]), ys - np.float32(self.origin[1])
        ex, ey, iod = self.ex.astype(np.float32), self.ey.astype(np.float32), np.float32(self.iod)
        self.fx = (rx * ex[0] + ry * ex[1]) / iod
        self.fy = (rx * ey[0] + ry * ey[1]) / iod
        self.img = np.zeros((self.n, self.n, 3), np.float32)

    def px(self, face_points: np.ndarray) -> np.ndarray:
        """Face-frame points -> supersampled pixel coordinates."""
        fp = np.atleast_2d(np.asarray(face_points, dtype=np.float64))
        return self.origin + self.iod * (fp[:, :1] * self.ex + fp[:, 1:] * self.ey)

    def _empty_box(self, pixels: np.ndarray, pad: float) -> tuple[np.ndarray, int, int]:
        """A zero array covering `pixels` plus `pad` (clipped to the canvas) and its top-left corner."""
        lo = np.clip(np.floor(pixels.min(axis=0) - pad), 0, self.n).astype(int)
        hi = np.clip(np.ceil(pixels.max(axis=0) + pad) + 1, 0, self.n).astype(int)
        hi = np.maximum(hi, lo)
        return np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.float32), int(lo[1]), int(lo[0])

    def _draw(self, face_points: np.ndarray, blur: float, width: float | None) -> _Mask:
        pixels = self.px(face_points)
        thickness = 0 if width is None else max(1, int(round(width * self.iod)))
        a, y0, x0 = self._empty_box(pixels, thickness + 3.0 * blur * self.iod + 2)
        if a.size:
            fixed = [np.round((pixels - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)]
            if width is None:
                cv2.fillPoly(a, fixed, 1.0, cv2.LINE_AA, _SHIFT)
            else:
                cv2.polylines(a, fixed, False, 1.0, thickness, cv2.LINE_AA, _SHIFT)
            if blur > 0:
                a = cv2.GaussianBlur(a, (0, 0), blur * self.iod)
        return _Mask(a, y0, x0)

    def fill(self, face_points: np.ndarray, blur: float = 0.0) -> _Mask:
        """A filled polygon, edges optionally blurred by `blur` IOD."""
        return self._draw(face_points, blur, None)

    def stroke(self, face_points: np.ndarray, width: float, blur: float = 0.0) -> _Mask:
        """A polyline `width` IOD wide, optionally blurred by `blur` IOD."""
        return self._draw(face_points, blur, width)

    def blob(self, centre, sx: float, sy: float) -> _Mask:
        """A Gaussian bump in face units (axis-aligned with the face), cut at 3.5 sigma."""
        reach = 3.5 * max(sx, sy)
        a, y0, x0 = self._empty_box(self.px(np.asarray(centre)[None]), reach * self.iod)
        box = (slice(y0, y0 + a.shape[0]), slice(x0, x0 + a.shape[1]))
        dx, dy = (self.fx[box] - centre[0]) / sx, (self.fy[box] - centre[1]) / sy
        return _Mask(np.exp(-0.5 * (dx * dx + dy * dy)), y0, x0)

    def full(self, field: np.ndarray) -> _Mask:
        """A full-canvas mask from a 2D field."""
        return _Mask(field.astype(np.float32, copy=False), 0, 0)

    def paint(self, mask: _Mask, colour, alpha: float = 1.0) -> None:
        region = self.img[mask.box]
        m = (np.float32(alpha) * mask.a)[..., None]
        region *= 1.0 - m
        region += m * np.asarray(colour, np.float32)

    def shade(self, mask: _Mask, amount: float) -> None:
        """Darken (amount > 0) or lighten (amount < 0, towards white) under `mask`."""
        region = self.img[mask.box]
        m = (np.float32(abs(amount)) * mask.a)[..., None]
        if amount >= 0:
            region *= 1.0 - m
        else:
            region += m * (1.0 - region)


def _expression_strengths(face: np.ndarray, neutral: np.ndarray) -> dict[str, float]:
    """0-1 strengths of the wrinkles an expression makes, from displacement against neutral."""
    d = face - neutral
    up = -d[:, 1]

    def clip(v, full):
        return float(np.clip(v / full, 0.0, 1.0))

    return {
        "brow_raise": clip(up[[17, 18, 19, 20, 21, 22, 23, 24, 25, 26]].mean(), 0.09),
        "brow_lower": clip(-up[[20, 21, 22, 23]].mean() + (neutral[22, 0] - neutral[21, 0]
                                                            - (face[22, 0] - face[21, 0])), 0.12),
        "nose_wrinkle": clip(up[31:36].mean(), 0.045),
        "smile": clip(up[[48, 54]].mean() + 0.5 * (d[54, 0] - d[48, 0]), 0.12),
        "cheek_raise": clip(up[[40, 41, 46, 47]].mean(), 0.05),
        "chin_raise": clip(up[[7, 8, 9]].mean(), 0.05),
    }


def _luma(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def _draw_head(c: _Canvas, face: np.ndarray, who: Identity) -> np.ndarray:
    """Background, hair behind the head, neck, ears, shoulders and the skin; returns the face mask."""
    top = np.linspace(1.0, 0.85, c.n, dtype=np.float32)[:, None, None]
    c.img[:] = np.asarray(who.background, np.float32) * top
    half_w = (face[16, 0] - face[0, 0]) / 2
    mid = (face[0] + face[16]) / 2
    if who.hair_style != "receding":
        back = np.array([[mid[0] + (half_w + 0.2) * np.cos(a), -0.3 - 1.55 * np.sin(a)]
                         for a in np.linspace(-0.2, np.pi + 0.2, 40)])
        if who.hair_style == "long":
            back = np.concatenate([[[half_w + 0.1, 2.3]], back, [[-half_w - 0.1, 2.3]]])
        c.paint(c.fill(back, blur=0.02), who.hair)
    skin = np.asarray(who.skin, np.float32)
    neck = np.array([[-0.5, 0.8], [0.5, 0.8], [0.62, 3.2], [-0.62, 3.2]])
    c.paint(c.fill(neck, blur=0.03), skin * 0.72)
    shoulders = np.array([[2.4 * np.cos(a), 3.4 - 1.0 * np.sin(a)] for a in np.linspace(0, np.pi, 30)])
    c.paint(c.fill(shoulders, blur=0.02), who.clothing)
    for side, anchor in ((-1, face[1]), (1, face[15])):
        ear = np.array([[anchor[0] + side * (0.06 + 0.1 * np.cos(a)), anchor[1] - 0.05 + 0.22 * np.sin(a)]
                        for a in np.linspace(0, 2 * np.pi, 20)])
        c.paint(c.fill(ear, blur=0.02), skin * 0.82)
    cranium = np.array([[mid[0] + half_w * np.cos(a), mid[1] - 1.55 * np.sin(a)]
                        for a in np.linspace(0.0, np.pi, 24)])
    outline = np.concatenate([_spline(face[0:17]), cranium])
    mask = c.fill(outline, blur=0.015)
    c.paint(mask, skin)
    return mask


@lru_cache(maxsize=64)
def _skin_texture(seed: int, n: int) -> np.ndarray:
    """An identity's fixed low-frequency blotchiness (+-3 %), the same in every frame."""
    coarse = np.random.default_rng(seed).normal(0.0, 0.03, (6, 6)).astype(np.float32)
    return cv2.resize(coarse, (n, n), interpolation=cv2.INTER_CUBIC)


def _shade_skin(c: _Canvas, face: np.ndarray, who: Identity, mask: _Mask, s: dict[str, float]) -> None:
    """Sphere shading, side light, low-frequency skin texture and soft highlights."""
    half_w = (face[16, 0] - face[0, 0]) / 2
    fx, fy = c.fx[mask.box] / half_w, (c.fy[mask.box] - 0.3) / 1.5
    r2 = np.minimum(fx * fx + fy * fy, 1.2)
    change = -0.4 * r2 * np.sqrt(r2) + 0.1 * who.light * np.clip(fx, -1, 1) + _skin_texture(who.texture_seed, c.n)[mask.box]
    c.img[mask.box] *= 1.0 + (mask.a * change)[..., None]
    cheek_y = 0.42 - 0.1 * s["cheek_raise"]
    c.shade(mask * c.blob((0.0, -0.8), 0.42, 0.25), -0.12)
    for x in (-0.58, 0.58):
        c.shade(mask * c.blob((x, cheek_y), 0.17, 0.12), -(0.08 + 0.06 * s["cheek_raise"]))
    c.shade(mask * c.blob((0.0, face[8, 1] - 0.22), 0.16, 0.1), -0.06)


def _draw_upper_face(c: _Canvas, face: np.ndarray, who: Identity, mask: _Mask, s: dict[str, float]) -> None:
    """Hairline, eye-socket shadows, brows, wrinkles, nose."""
    hairline = {"short": -1.0, "long": -0.95, "fringe": -0.62, "receding": -1.35}[who.hair_style]
    brow_top = min(face[17:27, 1].min() - 0.22, -0.45)
    line_y = min(hairline, brow_top) + 0.22 * (c.fx / 1.05) ** 2
    if who.hair_style != "receding":
        c.paint(mask * np.clip((line_y - c.fy) / 0.04 + 0.5, 0.0, 1.0), who.hair)
    # Eye band: sockets darker than the cheeks below and the forehead above, bridge left bright.
    for eye, brow in ((face[36:42], face[17:22]), (face[42:48], face[22:27])):
        ex, ey = eye[:, 0].mean(), eye[[0, 3], 1].mean()
        by = brow[:, 1].mean()
        c.shade(c.blob((ex, (ey + by) / 2 + 0.02), 0.22, 0.12), 0.32)
        c.shade(c.blob((ex, ey), 0.2, 0.07), 0.18)
    c.shade(c.blob((0.0, 0.28), 0.06, 0.24), -0.16)  # nose bridge highlight
    # Wrinkles.
    if s["brow_raise"] > 0.02:
        base = face[17:27, 1].min()
        for k in (1, 2, 3):
            xs = np.linspace(-0.55, 0.55, 9)
            c.shade(c.stroke(np.stack([xs, base - 0.15 * k + 0.06 * (xs / 0.55) ** 2], 1), 0.02, 0.012),
                    0.4 * s["brow_raise"])
    if s["brow_lower"] > 0.02:
        for x in (-0.07, 0.07):
            y0 = (face[21, 1] + face[22, 1]) / 2
            c.shade(c.stroke(np.array([[x, y0 - 0.18], [x * 0.8, y0 + 0.04]]), 0.025, 0.012),
                    0.4 * s["brow_lower"])
    if s["nose_wrinkle"] > 0.02:
        for side in (-1, 1):
            c.shade(c.stroke(np.array([[0.04 * side, 0.12], [0.14 * side, 0.22]]), 0.02, 0.01),
                    0.4 * s["nose_wrinkle"])
            c.shade(c.stroke(np.array([[0.05 * side, 0.2], [0.16 * side, 0.3]]), 0.02, 0.01),
                    0.3 * s["nose_wrinkle"])
    # Brows: filled strips, thicker at the inner end.
    for brow, inner_first in ((face[17:22], False), (face[22:27], True)):
        curve = _spline(brow, 6)
        t = np.linspace(1.0, 0.45, len(curve)) if inner_first else np.linspace(0.45, 1.0, len(curve))
        half = who.brow_thickness * t[:, None] / 2
        strip = np.concatenate([curve - half * [0, 1], (curve + half * [0, 1])[::-1]])
        c.paint(c.fill(strip, blur=0.012), who.brows, 0.92)
    # Nose: side shadows, nostrils, alar creases, the shadow under the tip, a tip highlight.
    tip = face[30]
    for side, wing in ((-1, face[31]), (1, face[35])):
        c.shade(c.stroke(np.array([[0.11 * side, 0.1], [wing[0] * 0.7, (tip[1] + wing[1]) / 2 - 0.05]]),
                         0.07, 0.05), 0.22)
        nostril = (wing + face[32 if side < 0 else 34]) / 2 - [0, 0.015]
        c.shade(c.fill(np.array([[nostril[0] + 0.05 * np.cos(a), nostril[1] + 0.025 * np.sin(a)]
                                 for a in np.linspace(0, 2 * np.pi, 12)]), blur=0.012), 0.6)
        arc = np.array([[wing[0] + side * 0.035 * np.sin(a), wing[1] - 0.05 - 0.06 * np.cos(a)]
                        for a in np.linspace(0, np.pi, 8)])
        c.shade(c.stroke(arc, 0.02, 0.012), 0.3)
    c.shade(c.blob((face[33, 0], face[33, 1] + 0.06), 0.16, 0.035), 0.18)
    c.shade(c.blob((tip[0], tip[1] - 0.02), 0.06, 0.05), -0.12)


def _draw_eyes(c: _Canvas, face: np.ndarray, who: Identity, s: dict[str, float], gaze: np.ndarray) -> None:
    skin_luma = _luma(who.skin)
    white = np.array([1.0, 0.97, 0.95]) * min(1.0, 0.8 * skin_luma + 0.2)
    iris = np.asarray(who.iris) * 0.8
    for eye in (face[36:42], face[42:48]):
        upper = _spline(eye[[0, 1, 2, 3]])
        lower = _spline(eye[[3, 4, 5, 0]])
        width = float(np.hypot(*(eye[3] - eye[0])))
        c.shade(c.stroke(upper - [0, 0.065], 0.02, 0.015), 0.16)  # lid crease
        opening = c.fill(np.concatenate([upper, lower]))
        c.paint(opening, white)
        centre = np.array([eye[[1, 2, 4, 5], 0].mean(), eye[[0, 3], 1].mean()]) + gaze * width
        r = 0.27 * width
        disc = np.array([[centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 20)])
        c.paint(opening * c.fill(disc), iris)
        c.paint(opening * c.blob(centre, 0.45 * r, 0.45 * r) ** 4, (0.03, 0.03, 0.03))
        c.paint(opening * c.blob(centre - 0.35 * r, 0.1 * r, 0.1 * r), (1.0, 1.0, 1.0), 0.7)
        c.paint(c.stroke(upper, 0.045, 0.006), (0.05, 0.04, 0.04), 0.9)   # lash line
        c.shade(c.stroke(lower, 0.015, 0.006), 0.35)
        if s["cheek_raise"] > 0.02:  # the lower-lid crease and crow's feet of a cheek raise
            c.shade(c.stroke(lower[::-1] + [0, 0.07], 0.02, 0.015), 0.3 * s["cheek_raise"])
            corner, side = (eye[0], -1.0) if eye[0, 0] < eye[3, 0] else (eye[3], 1.0)
            for dy in (-0.05, 0.0, 0.05):
                c.shade(c.stroke(np.array([corner + [0.06 * side, dy * 0.5], corner + [0.16 * side, dy * 1.6]]),
                                 0.018, 0.01), 0.35 * s["cheek_raise"])


def _draw_mouth(c: _Canvas, face: np.ndarray, who: Identity, s: dict[str, float]) -> None:
    # Nasolabial folds, deepening with a smile.
    for side, wing, corner in ((-1, face[31], face[48]), (1, face[35], face[54])):
        fold = np.array([wing + [0.09 * side, -0.02], (wing + corner) / 2 + [0.12 * side, 0.0],
                         corner + [0.09 * side, 0.1]])
        c.shade(c.stroke(_spline(fold), 0.03, 0.025), 0.08 + 0.3 * s["smile"])
    outer = np.concatenate([_spline(face[48:55]), _spline(face[[54, 55, 56, 57, 58, 59, 48]])])
    upper_inner = _spline(face[60:65])
    inner = np.concatenate([upper_inner, _spline(face[[64, 65, 66, 67, 60]])])
    c.shade(c.blob((face[57, 0], face[57, 1] + 0.08), 0.2, 0.045), 0.14)  # under the lower lip
    if s["chin_raise"] > 0.02:
        c.shade(c.stroke(np.array([[-0.2, face[57, 1] + 0.13], [0.0, face[57, 1] + 0.16],
                                   [0.2, face[57, 1] + 0.13]]), 0.025, 0.02), 0.35 * s["chin_raise"])
    c.paint(c.fill(outer, blur=0.008), who.lips, 0.95)
    for side, corner in ((-1, face[48]), (1, face[54])):  # the corners' shadow marks where they moved
        c.shade(c.blob(corner + [0.025 * side, 0.0], 0.035, 0.03), 0.3)
    c.shade(c.blob((face[57, 0], (face[57, 1] + face[66, 1]) / 2), 0.12, 0.03), -0.1)
    gap = float(face[[65, 66, 67], 1].mean() - face[[61, 62, 63], 1].mean())
    if gap > 0.015:
        mouth = c.fill(inner)
        c.paint(mouth, (0.12, 0.04, 0.04))
        order = np.argsort(face[60:65, 0])
        lip_y = np.interp(c.fx[mouth.box], face[60:65, 0][order], face[60:65, 1][order])
        teeth = _Mask(mouth.a * np.clip((lip_y + 0.08 - c.fy[mouth.box]) / 0.01 + 0.5, 0.0, 1.0), mouth.y0, mouth.x0)
        c.paint(teeth, np.array([0.95, 0.93, 0.86]) * min(1.0, 0.5 * _luma(who.skin) + 0.5))
    c.paint(c.stroke(upper_inner, 0.022, 0.008), (0.15, 0.05, 0.05), 0.8)


def render_face(landmarks: np.ndarray, identity: Identity, size: int, gaze: tuple[float, float] = (0.0, 0.0),
                noise_seed: int | None = None) -> np.ndarray:
    """Draw `identity` with the given 68 landmarks (output pixels, iBUG order) as size x size RGB uint8.

    `gaze` shifts the irises (fraction of eye width); `noise_seed` seeds the per-frame sensor noise
    (None: no noise). Deterministic for equal arguments.
    """
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise RenderError(f"size must be an integer >= 32 pixels, got {size!r}")
    points = check_landmarks(landmarks)
    if points.min() < -size or points.max() > 2 * size:
        raise RenderError(f"landmarks lie far outside a {size}x{size} image "
                          f"(range {points.min():.1f}..{points.max():.1f}): are they in pixels?")
    c = _Canvas(points, int(size))
    face = to_face_frame(points)
    strengths = _expression_strengths(face, identity.neutral)
    mask = _draw_head(c, face, identity)
    _shade_skin(c, face, identity, mask, strengths)
    _draw_upper_face(c, face, identity, mask, strengths)
    _draw_eyes(c, face, identity, strengths, np.asarray(gaze, np.float64))
    _draw_mouth(c, face, identity, strengths)
    img = cv2.GaussianBlur(c.img, (0, 0), 0.6 * SUPERSAMPLE)
    img = cv2.resize(img, (int(size), int(size)), interpolation=cv2.INTER_AREA)
    if noise_seed is not None:
        img = img + np.random.default_rng(noise_seed).normal(0.0, 2.5 / 255, img.shape).astype(np.float32)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
