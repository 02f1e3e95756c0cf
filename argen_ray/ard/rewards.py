"""The reward suite of ARD (DESIGN 2.3, 2.5): efficiency, quality, face presence, expression
amplitude and expression validity.

For a video V = (v_1 ... v_F) generated with T_a sampling steps:

- `R_t = 1 - T_a / T_max`
- `R_q = lambda * mean_f q(v_f) + (1 - lambda) * mean_f SSIM(v_f, v_{f+1})`,
  `q = (sharp + contrast) / 2` on the 8-bit gray frame, `sharp = L / (L + kappa)` for the
  Laplacian variance L, `contrast = min(1, std(gray) / contrast_norm)`
- `R_f = mean_f p_f`, p_f a face detector's face-presence probability (Haar: 0 or 1)
- `R_e = 1 - min(1, mean_f ||AU_f - AU_ref||_2 / A_max)`, AUs relative to the clip's own
  reference image (landmark AU readings are only trustworthy within one person)
- `R_c` (DESIGN 2.5, expression validity): U = the prompt's target AUs with intensities
  i_a in (0, 1], A = 5, L = ceil(F / 4); d_a(f) = max(0, AU_a(v_f) - AU_a(ref)), D_a = the largest
  mean of d_a over L consecutive frames (the apex, held);
  `R_c = clip(mean_{a in U} min(1, D_a / (i_a A)) - mu * mean_{a not in U} min(1, D_a / A), 0, 1)`
- `S = w_t R_t + w_q R_q + w_f R_f + w_e R_e + w_c R_c` (w_c = 0 is the paper's score)

Every score comes back with its components and per-frame details, so training logs and the
manifest can show why a video scored as it did. Work shared by the components is done once per
clip: one gray conversion of the stacked frames (used by quality, SSIM and the Haar detector),
one Laplacian over the stacked frames, one float cast for SSIM, one AU-estimator call over the
reference and the frames. The per-frame detectors (Haar, AU landmarks) dominate the cost
(docs/rewards.md); throughput scales with the ScorerActor pool.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence

import numpy as np

from argen_ray.config.reward import RewardConfig
from argen_ray.errors import ArgenError
from argen_ray.faces import haar_cascade, haar_faces


class RewardInputError(ArgenError, ValueError):
    """A video, reference image, step count or score list handed to the rewards is malformed."""


# ---------------------------------------------------------------------------------------------
# Face detectors: name -> factory(cfg). Any detector giving per-frame face probabilities plugs in.
# ---------------------------------------------------------------------------------------------
class FaceDetector(Protocol):
    def probabilities(self, frames: np.ndarray, gray: np.ndarray) -> np.ndarray:
        """(F,) face-presence probabilities in [0, 1] for RGB `frames` (F,H,W,3) and their gray."""


class HaarFaceDetector:
    """OpenCV's frontal Haar cascade: p_f = 1 when a face box is found in frame f, else 0.

    With `reward.track_faces`, frame f is first searched for faces of about the size found in
    frame f-1 (a few pyramid levels instead of all, ~6x less work) and in full only when that
    finds none, so p_f = 0 still means that the whole frame was searched.
    """

    def __init__(self, cfg: RewardConfig):
        haar_cascade()  # load (and validate) the cascade once, at actor start
        self.scale_factor = cfg.haar_scale_factor
        self.min_neighbors = cfg.haar_min_neighbors
        self.min_size_frac = cfg.haar_min_size_frac
        self.track = cfg.track_faces

    def probabilities(self, frames: np.ndarray, gray: np.ndarray) -> np.ndarray:
        # The cascade scans one image at a time; it works on the gray frames computed once.
        found, previous = [], None
        for g in gray:
            boxes = []
            if self.track and previous is not None:
                boxes = haar_faces(g, self.scale_factor, self.min_neighbors, self.min_size_frac, near_size=previous)
            if not len(boxes):
                boxes = haar_faces(g, self.scale_factor, self.min_neighbors, self.min_size_frac)
            previous = float(boxes[0][2]) if len(boxes) else None
            found.append(float(len(boxes) > 0))
        return np.array(found)


FACE_DETECTORS: dict[str, Callable[[RewardConfig], FaceDetector]] = {"haar": HaarFaceDetector}


def register_face_detector(name: str, factory: Callable[[RewardConfig], FaceDetector]) -> None:
    """Make `reward.face_detector: <name>` build `factory(cfg)` (e.g. a CNN detector on a cluster)."""
    FACE_DETECTORS[name] = factory


# ---------------------------------------------------------------------------------------------
# Input checks and per-frame measurements (vectorised over frames)
# ---------------------------------------------------------------------------------------------
def check_video(frames, what: str = "video", min_frames: int = 2, min_side: int = 7) -> np.ndarray:
    """A (F, H, W, 3) uint8 array, or a RewardInputError naming `what` and the problem."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise RewardInputError(f"{what}: frames must be uint8 RGB, got dtype {arr.dtype}")
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise RewardInputError(f"{what}: expected frames shaped (F, H, W, 3), got {arr.shape}")
    if arr.shape[0] < min_frames:
        raise RewardInputError(f"{what}: needs at least {min_frames} frames, got {arr.shape[0]}")
    if min(arr.shape[1:3]) < min_side:
        raise RewardInputError(f"{what}: frames of {arr.shape[1]}x{arr.shape[2]} px are smaller than "
                               f"the {min_side}x{min_side} SSIM window")
    return arr


def gray_frames(frames: np.ndarray) -> np.ndarray:
    """(F,H,W,3) RGB uint8 -> (F,H,W) 8-bit gray in ONE cv2 call (the frames stacked as rows)."""
    import cv2

    f, h, w, _ = frames.shape
    flat = np.ascontiguousarray(frames).reshape(f * h, w, 3)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY).reshape(f, h, w)


def laplacian_variance(gray: np.ndarray) -> np.ndarray:
    """(F,) variance of each frame's Laplacian (cv2, ksize 1), one Laplacian call for the clip.

    The frames are stacked vertically, each padded by one reflected row above and below, so the
    stacked Laplacian equals cv2.Laplacian of every frame on its own (OpenCV's default border
    is reflect-101, which is numpy's "reflect"). 16-bit output is exact for 8-bit input
    (|L| <= 1020); cv2.meanStdDev then reads each frame's variance without a float copy.
    """
    import cv2

    f, h, w = gray.shape
    padded = np.pad(gray, ((0, 0), (1, 1), (0, 0)), mode="reflect")
    lap = cv2.Laplacian(padded.reshape(f * (h + 2), w), cv2.CV_16S).reshape(f, h + 2, w)
    return np.array([cv2.meanStdDev(lap[i, 1:-1])[1][0, 0] ** 2 for i in range(f)])


def gray_std(gray: np.ndarray) -> np.ndarray:
    """(F,) population standard deviation of each 8-bit gray frame (cv2.meanStdDev)."""
    import cv2

    return np.array([cv2.meanStdDev(g)[1][0, 0] for g in gray])


def consecutive_ssim(gray: np.ndarray, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """(F-1,) SSIM(v_f, v_{f+1}) of 8-bit gray frames: scikit-image's `structural_similarity`
    (uniform win_size x win_size window, sample covariance, data range 255), for the whole clip
    in three box filters.

    The frames are stacked as rows and box-filtered once for the means, once for the squares and
    once for the products of consecutive frames. SSIM averages the map over the pixels at least
    win_size // 2 from every border, whose windows lie inside their own frame, so stacking
    changes none of them. Equal to scikit-image's per-pair result within 1e-6
    (tests/test_ard_rewards.py).
    """
    import cv2

    f, h, w = gray.shape
    pad = (win_size - 1) // 2
    # float32, centred on 128: (co)variances are shift-free and the squares stay small, so
    # float32 sums keep SSIM within 1e-6 of scikit-image's float64 at ~2x its speed.
    x = np.subtract(gray, np.float32(128.0), dtype=np.float32)
    box = lambda a: cv2.blur(a.reshape(-1, w), (win_size, win_size)).reshape(a.shape)[:, pad:h - pad, pad:w - pad]  # noqa: E731
    mean, mean_sq = box(x), box(x * x)
    mean_xy = box(x[:-1] * x[1:])
    cov_norm = np.float32(win_size ** 2 / (win_size ** 2 - 1))
    c1, c2 = np.float32((k1 * 255.0) ** 2), np.float32((k2 * 255.0) ** 2)
    # Per-frame terms once for all F frames, pair terms in place: the same formula as
    # ((2 ux uy + c1)(2 vxy + c2)) / ((ux^2 + uy^2 + c1)(vx + vy + c2)) in fewer array passes.
    var = mean_sq - mean * mean                   # vx, vy before the sample correction
    mu = mean + np.float32(128.0)
    mu_sq = mu * mu
    num = mu[:-1] * mu[1:]
    num *= 2
    num += c1
    cov = mean[:-1] * mean[1:]
    np.subtract(mean_xy, cov, out=cov)            # vxy before the sample correction
    cov *= 2 * cov_norm
    cov += c2
    num *= cov
    den = mu_sq[:-1] + mu_sq[1:]
    den += c1
    spread = var[:-1] + var[1:]
    spread *= cov_norm
    spread += c2
    den *= spread
    num /= den
    return num.reshape(f - 1, -1).mean(axis=1)


def frame_quality(gray: np.ndarray, kappa: float, contrast_norm: float) -> dict[str, np.ndarray]:
    """Per-frame sharpness L/(L+kappa), contrast min(1, std/contrast_norm) and q = their mean."""
    lap_var = laplacian_variance(gray)
    sharp = lap_var / (lap_var + kappa)
    contrast = np.minimum(1.0, gray_std(gray) / contrast_norm)
    return {"laplacian_var": lap_var, "sharpness": sharp, "contrast": contrast,
            "quality": 0.5 * (sharp + contrast)}


def check_target_aus(target_aus, what: str = "target_aus") -> dict[str, float]:
    """The prompt's target AUs as {"AU01": i_a} with i_a in (0, 1] ("AU1" is read as "AU01")."""
    if not isinstance(target_aus, dict):
        raise RewardInputError(f"{what}: expected a mapping of AU names to intensities in (0, 1], "
                               f"got {type(target_aus).__name__}")
    out = {}
    for name, value in target_aus.items():
        digits = str(name).upper().removeprefix("AU")
        if not digits.isdigit():
            raise RewardInputError(f"{what}: AU name {name!r} must look like AU01")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value <= 1:
            raise RewardInputError(f"{what}: intensity of {name} must be in (0, 1] (a fraction of the AU's "
                                   f"maximum, as prompts.jsonl `aus` holds it), got {value!r}")
        out[f"AU{int(digits):02d}"] = float(value)
    return out


def expression_validity(relative: np.ndarray, names: Sequence[str], target_aus: dict[str, float],
                        au_scale: float = 5.0, mu: float = 0.5) -> tuple[float, dict]:
    """R_c of DESIGN 2.5 from AU readings relative to the reference, and what it saw.

    Args:
        relative: (F, len(names)) AU_a(v_f) - AU_a(ref); NaN where a frame or the reference has
            no face. An unread frame shows no expression (d = 0), so a policy cannot earn
            validity by making faces unreadable.
        names: the AUs the estimator reads; target AUs it does not read (e.g. AU16 for the
            landmark backend) are left out of U and reported in `rc_targets_unread`.
        target_aus: U, {AU name: i_a in (0, 1]} (`check_target_aus`).
        au_scale: A, the estimator's full scale (5 on OpenFace's).
        mu: the weight of non-target motion.

    Returns (R_c, info) with the apex D_a of every target AU and the hold length L.
    """
    rel = np.asarray(relative, dtype=np.float64)
    frames = rel.shape[0]
    hold = math.ceil(frames / 4)
    lift = np.nan_to_num(np.maximum(rel, 0.0), nan=0.0)          # d_a(f)
    sums = np.cumsum(np.vstack([np.zeros((1, rel.shape[1])), lift]), axis=0)
    apex = ((sums[hold:] - sums[:-hold]) / hold).max(axis=0)    # D_a: best mean over L frames
    index = {n: j for j, n in enumerate(names)}
    targets = [a for a in target_aus if a in index]
    others = [j for n, j in index.items() if n not in target_aus]
    reached = np.mean([min(1.0, apex[index[a]] / (target_aus[a] * au_scale)) for a in targets]) if targets else 0.0
    stray = np.mean(np.minimum(1.0, apex[others] / au_scale)) if others else 0.0
    r_c = float(np.clip(reached - mu * stray, 0.0, 1.0))
    return r_c, {"rc_hold_frames": hold, "rc_target_reached": float(reached), "rc_nontarget_motion": float(stray),
                 "rc_apex": {a: float(apex[index[a]]) for a in targets},
                 "rc_targets_unread": sorted(a for a in target_aus if a not in index)}


def efficiency_reward(steps: int, max_steps: int) -> float:
    """R_t = 1 - T_a / T_max."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= max_steps:
        raise RewardInputError(f"steps must be an integer in [1, {max_steps}] (T_max), got {steps!r}")
    return 1.0 - int(steps) / max_steps


def _floats(values: np.ndarray) -> list:
    """Per-frame values as JSON-ready floats (None where undefined, e.g. no face for AUs)."""
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


# ---------------------------------------------------------------------------------------------
# The scorer
# ---------------------------------------------------------------------------------------------
class RewardScorer:
    """Scores generated videos; loads the face detector and the AU estimator once.

    Args:
        cfg: the `reward` config section (weights and every constant).
        max_steps: T_max, the largest sampling-step count of the action space.
    """

    def __init__(self, cfg: RewardConfig, max_steps: int):
        if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise RewardInputError(f"max_steps (T_max) must be a positive integer, got {max_steps!r}")
        if cfg.face_detector not in FACE_DETECTORS:
            raise RewardInputError(f"reward.face_detector: unknown detector {cfg.face_detector!r} "
                                   f"(registered: {sorted(FACE_DETECTORS)})")
        self.cfg = cfg
        self.max_steps = int(max_steps)
        self.face_detector = FACE_DETECTORS[cfg.face_detector](cfg)
        # R_e and R_c with weight 0 are not computed at all: AU estimation is costly.
        self.au_estimator = None
        if cfg.w_e > 0 or cfg.w_c > 0:
            from argen_ray.asi.au import get_au_estimator

            try:
                self.au_estimator = get_au_estimator(cfg.au_backend)
            except ArgenError as exc:
                raise RewardInputError(f"reward.au_backend={cfg.au_backend!r}: {exc}") from None
            if hasattr(self.au_estimator, "track"):  # backends that can follow a face through a clip
                self.au_estimator.track = cfg.track_faces

    # -- components ---------------------------------------------------------------------------
    def efficiency(self, steps: int) -> float:
        """R_t = 1 - T_a / T_max."""
        return efficiency_reward(steps, self.max_steps)

    def quality(self, gray: np.ndarray) -> tuple[dict, dict]:
        """R_q and its two parts, plus per-frame quality and SSIM."""
        cfg = self.cfg
        per_frame = frame_quality(gray, cfg.sharp_kappa, cfg.contrast_norm)
        ssim = consecutive_ssim(gray, cfg.ssim_window)
        q_mean, t_mean = float(per_frame["quality"].mean()), float(ssim.mean())
        parts = {"r_q": cfg.quality_lambda * q_mean + (1 - cfg.quality_lambda) * t_mean,
                 "r_q_quality": q_mean, "r_q_temporal": t_mean}
        return parts, {**per_frame, "ssim_next": ssim}

    def face_presence(self, frames: np.ndarray, gray: np.ndarray) -> tuple[float, np.ndarray]:
        """R_f = mean face-presence probability, and the per-frame probabilities."""
        probs = np.clip(np.asarray(self.face_detector.probabilities(frames, gray), dtype=float), 0.0, 1.0)
        if probs.shape != (len(frames),):
            raise RewardInputError(f"face detector {self.cfg.face_detector!r} returned shape {probs.shape} "
                                   f"for {len(frames)} frames")
        return float(probs.mean()), probs

    def read_relative_aus(self, frames: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, list, bool]:
        """(F, AUs) readings of every frame minus the reference image's (same person), the AU
        names and whether the reference was read; shared by R_e and R_c."""
        if np.array_equal(reference, frames[0]):  # a generated clip starts with its reference
            reading = self.au_estimator.estimate(frames)
            relative = reading.relative(0)
            reference_read = bool(reading.face_found[0])
        elif reference.shape == frames.shape[1:]:  # one estimator call over reference + clip
            reading = self.au_estimator.estimate(np.concatenate([reference[None], frames]))
            relative = reading.relative(0)[1:]
            reference_read = bool(reading.face_found[0])
        else:
            ref_reading = self.au_estimator.estimate(reference[None])
            ref_vector = (ref_reading.signed if ref_reading.signed is not None else ref_reading.values)[0]
            reading = self.au_estimator.estimate(frames)
            relative = reading.relative(ref_vector)
            reference_read = bool(ref_reading.face_found[0])
        return relative, list(reading.names), reference_read

    def expression(self, relative: np.ndarray, names: list, reference_read: bool) -> tuple[float, np.ndarray, dict]:
        """R_e from AU distances of every frame to the reference image's AUs (same person)."""
        dist = np.linalg.norm(relative, axis=1)  # NaN where the frame or the reference has no face
        readable = np.isfinite(dist)
        if readable.any():
            mean_dist = float(dist[readable].mean())
            r_e = 1.0 - min(1.0, mean_dist / self.cfg.au_max)
        else:
            mean_dist, r_e = float("nan"), float(self.cfg.au_unreadable_reward)
        info = {"au_names": names, "au_frames_read": int(readable.sum()),
                "au_reference_read": reference_read,
                "au_mean_distance": None if not math.isfinite(mean_dist) else mean_dist}
        return r_e, dist, info

    # -- the public calls ---------------------------------------------------------------------
    def validity(self, relative: np.ndarray, names: list, target_aus: dict[str, float]) -> tuple[float, dict]:
        """R_c (DESIGN 2.5) of the clip against the prompt's target AUs."""
        return expression_validity(relative, names, target_aus, self.cfg.rc_au_scale, self.cfg.rc_mu)

    def score(self, frames, reference=None, steps: int | None = None, target_aus: dict | None = None) -> dict:
        """Score one video.

        Args:
            frames: (F, H, W, 3) uint8 RGB, F >= 2.
            reference: the identity image the clip was generated from (H', W', 3) uint8;
                None uses frame 0 (generated clips start with their reference).
            steps: T_a, the sampling steps the action used.
            target_aus: the prompt's target AUs {AU name: intensity in (0, 1]} (prompts.jsonl
                `aus`); required when reward.w_c > 0.

        Returns a JSON-ready dict: `score`, `r_t`, `r_q`, `r_q_quality`, `r_q_temporal`, `r_f`,
        `r_e` (None when w_e = 0), `r_c` (None when w_c = 0), `weights`, `steps`, `num_frames`,
        AU and R_c bookkeeping, and
        `per_frame` lists (laplacian_var, sharpness, contrast, quality, ssim_next [F-1],
        face_prob, au_distance [None where no face was read]).
        """
        frames = check_video(frames, min_side=self.cfg.ssim_window)
        if steps is None:
            raise RewardInputError("steps (T_a, the sampling steps of the action) is required")
        ref = frames[0] if reference is None else check_video(np.asarray(reference)[None], "reference image",
                                                                min_frames=1, min_side=1)[0]
        cfg = self.cfg
        if cfg.w_c > 0:
            if target_aus is None:
                raise RewardInputError("target_aus (the prompt's `aus`) is required when reward.w_c > 0 (R_c)")
            target_aus = check_target_aus(target_aus)
        r_t = self.efficiency(steps)
        gray = gray_frames(frames)
        q_parts, q_frames = self.quality(gray)
        r_f, face_prob = self.face_presence(frames, gray)
        result = {"r_t": r_t, **q_parts, "r_f": r_f, "r_e": None, "r_c": None}
        per_frame = {**{k: _floats(v) for k, v in q_frames.items()}, "face_prob": _floats(face_prob)}
        score = cfg.w_t * r_t + cfg.w_q * q_parts["r_q"] + cfg.w_f * r_f
        if self.au_estimator is not None:
            relative, names, reference_read = self.read_relative_aus(frames, ref)
            if cfg.w_e > 0:
                r_e, au_dist, au_info = self.expression(relative, names, reference_read)
                result["r_e"] = r_e
                result.update(au_info)
                per_frame["au_distance"] = _floats(au_dist)
                score += cfg.w_e * r_e
            if cfg.w_c > 0:
                r_c, rc_info = self.validity(relative, names, target_aus)
                result.update(r_c=r_c, rc_targets=target_aus, **rc_info)
                score += cfg.w_c * r_c
        result.update(score=float(score), steps=int(steps), num_frames=int(len(frames)),
                      weights={"w_t": cfg.w_t, "w_q": cfg.w_q, "w_f": cfg.w_f, "w_e": cfg.w_e, "w_c": cfg.w_c},
                      per_frame=per_frame)
        return result

    def score_many(self, videos: Sequence, references: Sequence | None = None,
                   steps: Sequence[int] | None = None, target_aus: Sequence[dict] | None = None) -> list[dict]:
        """Score several videos in this process (the ScorerActor pool spreads them over actors)."""
        references, steps, target_aus = check_batch(videos, references, steps, target_aus)
        return [self.score(v, r, s, a) for v, r, s, a in zip(videos, references, steps, target_aus)]


def check_batch(videos: Sequence, references: Sequence | None, steps: Sequence[int] | None,
                target_aus: Sequence[dict] | None = None) -> tuple[list, list, list]:
    """References (None -> frame 0 each), steps and target AUs (None -> none given) matched
    one-to-one with `videos`."""
    n = len(videos)
    references = [None] * n if references is None else list(references)
    target_aus = [None] * n if target_aus is None else list(target_aus)
    if steps is None:
        raise RewardInputError("steps (one T_a per video) is required")
    steps = list(steps)
    if len(references) != n or len(steps) != n or len(target_aus) != n:
        raise RewardInputError(f"{n} videos need as many references, steps and target AU sets, got "
                               f"{len(references)} references, {len(steps)} steps and {len(target_aus)} target AU sets")
    return references, steps, target_aus


def group_rewards(scores: Sequence[float], k: int, delta: float) -> list[float]:
    """The group rule of DESIGN 2.3: top-k candidates get their score S, the rest get -delta.

    Ties: every candidate whose score is >= the k-th largest score counts as top-k, so a tie at
    the boundary lets more than k candidates keep their score (never fewer than k); candidates
    with equal scores are always treated alike.
    """
    values = np.asarray(list(scores), dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise RewardInputError(f"group_rewards needs a non-empty list of scores, got {list(scores)!r}")
    if not np.isfinite(values).all():
        raise RewardInputError(f"group_rewards: scores must be finite, got {values.tolist()}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(values):
        raise RewardInputError(f"group_rewards: k must be an integer in [1, {len(values)}] (the group size), got {k!r}")
    if not delta >= 0:
        raise RewardInputError(f"group_rewards: delta must be >= 0, got {delta!r}")
    kth = np.sort(values)[::-1][k - 1]
    return [float(s) if s >= kth else -float(delta) for s in values]
