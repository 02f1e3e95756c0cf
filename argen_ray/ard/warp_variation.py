"""What makes one warp clip move like a real clip of its class, and differ from its siblings.

The warp backend (`argen_ray/ard/warp.py`) turns the policy's guidance curve into an expression
schedule and renders it; this module holds the two things around that, both pure numpy:

- `expression_schedule`: curve -> onset -> apex -> hold. The curve's running maximum, floored at
  `hold` times the peak reached so far (real clips hold their apex: measured `hold` ~ 1 on the demo
  data; a dataset whose expressions relax has a lower one), spread over the build-up and times a
  smoothstep rise whose 10 % and 90 % points sit on the onset and apex frames of a real clip of
  the class; after the build-up the level is held.
- `ClipVariation` / `draw_variation`: what the seed decides. One real training clip of the class
  (`<run_dir>/data/dynamics.json`, `argen_ray.data.dynamics`) lends its timing (onset, apex,
  hold, jittered by up to half a frame), its head path (eye-centre shift, scale, roll relative to
  frame 0, resampled to the clip length and mirrored left-right with probability 1/2), its
  frame-to-frame change and its noise grain; each target AU's intensity is drawn inside the
  prompt's intensity band, centred on its measured value (the ASI adverbs: < 0.33 slightly, < 0.66 moderately, else strongly).
- `add_sensor_noise`: fresh noise on every new frame, with the real clip's grain, as strong as it
  takes for the clip's frame-to-frame change to reach the real clip's (real clips are re-exposed
  every frame, so their noise changes from frame to frame; a warp of one image would otherwise
  carry one frozen noise pattern and change less from frame to frame than any real clip).

Without measured dynamics (a bare `GeneratorConfig`, the unit tests) the curve's running maximum
spans the clip, with no head motion and no added noise; the seed still varies the AU amplitudes
and, with it, the clip.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# smoothstep(x) = 3x^2 - 2x^3 reaches 10 % at x = S10 and 90 % at x = S90.
S10, S90 = 0.19580, 0.80420
TIMING_JITTER = 0.5  # frames
STRENGTH_STEPS = 9   # bisection steps of the noise strength: within 2 x target / 2^9 = 0.4 % of the target
GRAIN_STEPS = 5      # bisection steps of the noise grain for a noise target (blur within 1.5 / 32 pixels)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def expression_schedule(curve: np.ndarray, onset: float | None = None, apex: float | None = None,
                        hold: float = 1.0) -> np.ndarray:
    """(N,) expression level of new frames 1..N from the curve's per-frame fractions `curve`.

    The envelope is the curve's running maximum floored at `hold` times it (`hold` = 1: an
    expression, once shown, is held). With a real clip's timing (`onset` / `apex`: clip frame
    positions where its rise reaches 10 % / 90 %), the curve's N points are spread over the
    build-up, which ends where a smoothstep rise through those two points completes; the rise
    multiplies the envelope and the level stays at the envelope's end value afterwards. Without
    timing the envelope is laid over the whole clip as it is.
    """
    c = np.clip(np.asarray(curve, np.float64), 0.0, 1.0)
    envelope = np.maximum(c, float(np.clip(hold, 0.0, 1.0)) * np.maximum.accumulate(c))
    if apex is None or onset is None:
        return envelope
    length = max((apex - onset) / (S90 - S10), 0.5)
    start = onset - S10 * length
    frames = np.arange(1, len(c) + 1)
    grid = (np.arange(len(c)) + 0.5) / len(c)        # the curve's u_n (DESIGN 2.2)
    u = np.clip(frames / (start + length), 0.0, 1.0)  # build-up time: 1 once the rise is complete
    return smoothstep((frames - start) / length) * np.interp(u, grid, envelope)


def intensity_band(fraction: float, edges=None) -> tuple[float, float]:
    """The (low, high) 0-1 band of the ASI adverb that names `fraction`."""
    if edges is None:
        from argen_ray.asi.knowledge import ADVERBS

        edges = [t for t, _ in ADVERBS[:-1]]
    low = 0.0
    for edge in edges:
        if fraction < edge:
            return low, edge
        low = edge
    return low, 1.0


@dataclass
class ClipVariation:
    """One clip's timing, head path, noise and AU amplitudes (clip frames 0..N)."""

    onset: float | None = None         # None: no measured timing (the curve spans the clip)
    apex: float | None = None
    hold: float = 1.0
    pose: np.ndarray | None = None     # (N + 1, 4): dx, dy (IOD units), log scale, roll (deg); None = still
    frame_change: float = 0.0          # the real clip's mean frame-to-frame grey change; 0 = add no noise
    noise_blur: float = 0.0            # Gaussian blur (pixels) giving fresh noise the real clip's grain
    noise: float = 0.0                 # sensor noise the frames should measure before encoding; 0 = grain as drawn
    source: str | None = None          # the real clip whose dynamics were drawn
    amplitudes: dict[int, float] | None = None

    def as_dict(self) -> dict:
        return {"onset": self.onset and round(self.onset, 3), "apex": self.apex and round(self.apex, 3),
                "hold": round(self.hold, 3),
                "frame_change": round(self.frame_change, 3), "noise_blur": round(self.noise_blur, 3),
                "noise": round(self.noise, 3),
                "dynamics_from": self.source,
                "head_motion": None if self.pose is None else round(float(np.abs(self.pose[:, :2]).max()), 4)}


def variation_rng(seed: int, key: str) -> np.random.Generator:
    """The clip's random stream: its seed and a stable hash of the prompt (so prompts sharing a
    seed still differ)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8"))])


def draw_amplitudes(rng: np.random.Generator, fractions: dict[int, float]) -> dict[int, float]:
    """Each AU's 0-1 intensity redrawn uniformly around its measured value, as far either way as
    its adverb band allows: inside the band, and with the measured value as its mean. (Uniform
    over the whole band shortened the surprise clips: a jaw drop measured at 0.654 sits in the
    0.33-0.66 band, drawn at 0.5 on average; generated / real apex displacement was 0.86.)"""
    out = {}
    for au, value in fractions.items():
        v = min(max(float(value), 1e-3), 1.0)
        low, high = intensity_band(v)
        half = min(v - low, high - v)
        out[au] = float(rng.uniform(v - half, v + half))
    return out


def _resample(pose: np.ndarray, frames: int) -> np.ndarray:
    src = np.linspace(0.0, 1.0, len(pose))
    dst = np.linspace(0.0, 1.0, frames)
    return np.stack([np.interp(dst, src, pose[:, k]) for k in range(pose.shape[1])], axis=1)


def class_profiles(dynamics: dict | None, emotion: str | None) -> list[dict]:
    """The measured clips to draw from: the class's, or every class's when it has none."""
    if not dynamics:
        return []
    classes = dynamics.get("classes", {})
    if emotion in classes and classes[emotion]["profiles"]:
        return classes[emotion]["profiles"]
    return [p for c in classes.values() for p in c["profiles"]]


def draw_variation(rng: np.random.Generator, profiles: list[dict], num_frames: int,
                   fractions: dict[int, float], codec_noise: float = 0.0) -> ClipVariation:
    """A clip's variation: a real clip's timing, head path and noise (when `profiles`), and AU
    amplitudes inside their bands; `fractions` are the target AUs as 0-1 fractions. `codec_noise`:
    what writing the clip adds to its noise estimate (in quadrature), taken off the drawn clip's."""
    amplitudes = draw_amplitudes(rng, fractions)
    if not profiles:
        return ClipVariation(amplitudes=amplitudes)
    p = profiles[int(rng.integers(len(profiles)))]
    last = num_frames - 1
    jitter = rng.uniform(-TIMING_JITTER, TIMING_JITTER, 2)
    onset = float(np.clip(p["onset"] * last + jitter[0], 0.0, last))
    apex = float(np.clip(p["apex"] * last + jitter[1], onset, last))
    pose = _resample(np.asarray(p["pose"], np.float64), num_frames) if p.get("pose") else None
    if pose is not None and rng.random() < 0.5:
        pose[:, 0] *= -1  # mirrored left-right: x shift and roll change sign
        pose[:, 3] *= -1
    return ClipVariation(onset=onset, apex=apex, hold=float(p["hold"]), pose=pose,
                         frame_change=float(p["frame_change"]), noise_blur=noise_blur(float(p["noise_ratio"])),
                         noise=math.sqrt(max(float(p.get("noise", 0.0)) ** 2 - codec_noise ** 2, 0.0)),
                         source=str(p.get("clip_id")), amplitudes=amplitudes)


def move_head(frame: np.ndarray, pose_row: np.ndarray, origin: np.ndarray, iod: float) -> np.ndarray:
    """The frame moved rigidly by one head pose (about the reference's eye centre)."""
    import cv2

    dx, dy, log_scale, roll = (float(v) for v in pose_row)
    if abs(dx) + abs(dy) + abs(log_scale) + abs(roll) < 1e-9:
        return frame
    m = cv2.getRotationMatrix2D((float(origin[0]), float(origin[1])), -roll, math.exp(log_scale))
    m[:, 2] += (dx * iod, dy * iod)
    h, w = frame.shape[:2]
    # Cubic: bilinear resampling visibly softens every moved frame (Laplacian variance 83 vs 103).
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)


@lru_cache(maxsize=1)
def _grain_table() -> tuple[np.ndarray, np.ndarray]:
    """(blur sigmas, noise ratio of white noise blurred by each): `dynamics.noise_ratio` of such noise."""
    import cv2

    from argen_ray.data.dynamics import noise_sigma

    white = np.random.default_rng(0).normal(0.0, 1.0, (128, 128)).astype(np.float32)
    blurs = np.linspace(0.0, 1.5, 31)
    ratios = []
    for b in blurs:
        field = cv2.GaussianBlur(white, (0, 0), float(b)) if b > 0 else white
        ratios.append(noise_sigma(field) / float(field.std()))
    return blurs, np.asarray(ratios)


def noise_blur(ratio: float) -> float:
    """The Gaussian blur (pixels) that gives white noise a measured `noise_ratio` (0: white)."""
    blurs, ratios = _grain_table()
    return float(np.interp(-float(ratio), -ratios, blurs))  # ratios fall as the blur grows


def mean_frame_change(frames: np.ndarray) -> float:
    """`dynamics.frame_change` of (F, H, W, 3) uint8 frames, on the same 8-bit grey as the real clips'."""
    from argen_ray.ard.rewards import gray_frames
    from argen_ray.data.dynamics import clip_frame_change

    return clip_frame_change(gray_frames(np.ascontiguousarray(frames, np.uint8)))


def frames_noise(frames: np.ndarray) -> float:
    """`dynamics.noise` of (F, H, W, 3) uint8 frames, on the same 8-bit grey as the real clips'."""
    from argen_ray.ard.rewards import gray_frames
    from argen_ray.data.dynamics import clip_noise

    return clip_noise(gray_frames(np.ascontiguousarray(frames, np.uint8)))


def add_sensor_noise(frames: np.ndarray, frame_change: float, blur: float, rng: np.random.Generator,
                     noise: float = 0.0) -> None:
    """Fresh grey noise on frames 1..N (in place; frame 0, the reference, keeps its own) with the
    real clip's grain (`blur`), as strong as it takes for the clip's mean frame-to-frame change to
    reach the real clip's `frame_change` (none when the motion alone reaches it).

    The strength is found by bisection on the clip itself: a closed form (noise and motion
    changes adding in quadrature) overshot the target by ~10 % and left the noise too strong.
    With a `noise` target the grain is then re-chosen by bisection (coarser grain, lower estimate
    at the same frame change) so that the frames' sensor-noise estimate reaches it too (a
    quadrature rule missed it by ~0.1 grey levels: the estimate of sparse edges plus noise is not
    additive in quadrature).
    """
    import cv2

    if mean_frame_change(frames) >= frame_change or len(frames) < 2:
        return
    white = rng.normal(0.0, 1.0, (len(frames) - 1, *frames.shape[1:3])).astype(np.float32)
    base = frames.astype(np.float32)

    def fields_of(b: float) -> np.ndarray:
        out = np.empty_like(white)
        for n, field in enumerate(white):
            field = cv2.GaussianBlur(field, (0, 0), b) if b > 0 else field
            out[n] = field / max(float(field.std()), 1e-6)
        return out

    def noisy(fields: np.ndarray, spread: float) -> np.ndarray:
        out = base.copy()
        out[1:] += spread * fields[..., None]
        return np.clip(np.round(out), 0, 255).astype(np.uint8)

    def strength(fields: np.ndarray) -> float:
        low, high = 0.0, 2.0 * frame_change   # the change of noise alone at spread s is ~1.13 s
        for _ in range(STRENGTH_STEPS):
            mid = (low + high) / 2
            low, high = (mid, high) if mean_frame_change(noisy(fields, mid)) < frame_change else (low, mid)
        return (low + high) / 2

    fields = fields_of(blur)
    spread = strength(fields)
    if noise > 0:
        # Coarser grain lowers the noise estimate at the same strength (unit-std fields: the frame
        # change barely depends on the grain): bisect the grain, then match the change again.
        low, high = 0.0, float(_grain_table()[0][-1])
        for _ in range(GRAIN_STEPS):
            mid = (low + high) / 2
            low, high = (mid, high) if frames_noise(noisy(fields_of(mid), spread)[1:]) > noise else (low, mid)
        fields = fields_of((low + high) / 2)
        spread = strength(fields)
    frames[:] = noisy(fields, spread)


__all__ = ["ClipVariation", "add_sensor_noise", "class_profiles", "draw_amplitudes", "draw_variation",
           "expression_schedule", "frames_noise", "intensity_band", "mean_frame_change", "move_head", "noise_blur", "smoothstep", "variation_rng"]
