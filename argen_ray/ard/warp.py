"""A CPU generator backend: animate a real face by AU-driven piecewise-affine landmark warping.

Where no GPU and no pretrained video-diffusion weights exist, the tiny random diffusion model of
the local preset can only make noise. This backend makes real expression clips from the
identity image alone, behind the same interface as the TI2V generator (`GeneratorBackend`):

1. dlib's 68 iBUG landmarks of the reference (`argen_ray.faces.detect_landmarks`).
2. Target landmarks: the FACS displacement model of `argen_ray.data.demo.au_model`
   (`au_to_landmarks`: each AU moves fixed landmarks by intensity/5 of its full displacement, in
   a face frame measured from the eye corners, so it applies to any frontal face).
3. Each solved keyframe is rendered by a piecewise-affine warp of the reference: a fixed
   triangulation of the 68 points plus a ring of fixed points around the face; every pixel
   inside the ring is mapped back through its triangle's affine map (one `cv2.remap`), pixels
   outside stay as they are. Where the inner-lip polygon opens wider than in the reference, the
   reference's mouth interior moves with the upper lip and the rest of the opening is drawn as
   the dark mouth cavity.

The three policy action heads, mapped honestly (docs/warp.md):

- guidance curve w_n (n = 1..N, from `guidance_curve`) -> per-frame fractions
  `c_n = clip((w_n - w_min) / (w_max - w_min), 0, 1)` -> the expression schedule of
  `warp_variation.expression_schedule`: onset -> apex -> hold, as real clips of the class do
  (the curve's running maximum floored at the measured hold level, times a rise whose onset and
  apex come from a real training clip). Frame n shows the target AUs at that level. The Beta
  curve's shape decides when the apex is reached (a flat curve: as soon as the rise allows; a
  bell: mid-clip; alpha = 3, beta = 1: at the last frame) and the mean level.
- steps T -> the number of keyframes actually solved, `K = min(T, N)`, evenly spaced over the
  N new frames (the last frame is always one). Frames between keyframes are cross-faded from
  their two neighbouring keyframes (the reference counts as keyframe 0): a dissolve, not a
  movement, so fewer keyframes are cheaper but ghost and follow the schedule only at the
  keyframes. `nfe` = K: the backend's cost unit, in the role of UNet evaluations.
- the seed (`warp_variation.draw_variation`): which real clip of the class lends its timing, head
  path, frame-to-frame change and noise grain (`generator.warp.dynamics`, measured by `argen_ray.data.dynamics`), and
  each AU's amplitude inside the prompt's intensity band. K seeds give K distinct clips; the same
  seed gives the same clip.

Target AUs: `request.aus` (prompts.jsonl: 0-1 fractions of the maximum, times
`generator.warp.au_scale` onto OpenFace's 0-5 scale); when empty, the emotion's prototype from
the ASI knowledge base. AUs without landmark displacements are drawn by the closest modelled
AU (`STAND_INS`); any other unknown AU is an error naming the request.

`encode_state` is this backend's own policy state: the MiniLM sentence embedding of the
prompt and, for the reference, its 68 landmarks in face-frame units plus the colour statistics
of its face box.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from argen_ray.ard.generator import GenerationRequest, GenerationResult, register_generator
from argen_ray.ard.warp_appearance import AppearanceTransfer, read_appearance
from argen_ray.ard.warp_variation import (ClipVariation, add_sensor_noise, class_profiles, draw_variation,
                                          expression_schedule, move_head, variation_rng)
from argen_ray.data.demo.au_model import (AUModelError, au_number, au_to_landmarks, check_intensities,
                                          face_frame, to_face_frame)
from argen_ray.errors import ArgenError

# AUs the knowledge base uses that the landmark model has no displacements for -> the modelled
# AU that moves the same landmarks the same way (a weaker version of the movement).
STAND_INS: dict[int, int] = {
    24: 23,  # lip pressor -> lip tightener (the lips press and thin)
    27: 26,  # mouth stretch -> jaw drop (the jaw opens wide)
    43: 45,  # eyes closed -> blink
}
# Fixed points around the face, on an ellipse in face-frame units (inter-ocular distance = 1,
# origin between the eyes, y down the face). Outside it the image is left untouched.
RING_POINTS = 24
RING_CENTRE = (0.0, 0.65)
RING_AXES = (1.75, 1.6)
RING_CLEARANCE = 0.75          # landmarks stay within this fraction of the ring (else it grows)
CAVITY_DARKNESS = 0.3          # mouth-cavity colour = this times the mean lip colour
OPENFACE_MAX = 5.0             # AU intensities run 0-5; prompts store 0-1 fractions of this
INNER_MOUTH = list(range(60, 68))
OUTER_MOUTH = list(range(48, 60))
MODEL_ID = "argen-ray/warp-dlib68-facs"


class WarpError(ArgenError, ValueError):
    """A request the warp backend cannot animate; the message names the request and why."""


# ---------------------------------------------------------------------------------------------
# Action mapping: guidance curve -> intensity schedule, steps -> keyframes
# ---------------------------------------------------------------------------------------------
def intensity_schedule(guidance: np.ndarray | float, num_new: int, w_min: float, w_max: float) -> np.ndarray:
    """(num_new,) fractions of the target intensity: w_n rescaled from [w_min, w_max] to [0, 1]."""
    if w_max <= w_min:
        raise WarpError(f"generator.w_max ({w_max}) must exceed generator.w_min ({w_min})")
    w = np.asarray(guidance, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(num_new, float(w))
    if w.shape != (num_new,):
        raise WarpError(f"guidance has {w.size} values for {num_new} new frames (one w_n per generated frame)")
    if not np.isfinite(w).all():
        raise WarpError("guidance contains NaN or infinite values")
    return np.clip((w - w_min) / (w_max - w_min), 0.0, 1.0)


def keyframe_positions(steps: int, num_new: int) -> np.ndarray:
    """Frame positions (1..num_new) of the min(steps, num_new) keyframes; the last is num_new."""
    count = min(int(steps), num_new)
    return np.unique(np.round(np.linspace(0, num_new, count + 1)[1:]).astype(int))


# ---------------------------------------------------------------------------------------------
# The mesh: a fixed triangulation of the 68 landmarks and the ring
# ---------------------------------------------------------------------------------------------
def _ring(scale: float = 1.0) -> np.ndarray:
    phi = np.linspace(0.0, 2 * np.pi, RING_POINTS, endpoint=False)
    return np.stack([RING_CENTRE[0] + scale * RING_AXES[0] * np.cos(phi),
                     RING_CENTRE[1] + scale * RING_AXES[1] * np.sin(phi)], axis=1)


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """(T, 3) vertex indices over [68 landmarks, ring]: Delaunay on a canonical neutral face.

    The inner lips are parted a little and their corners drawn in first, so the triangulation
    has a mouth interior (triangles among points 60-67) that can open when the jaw drops, and no
    triangle joins the upper lip to the lower lip outside it (which would smear the lips). One
    triangulation serves every face, so a face whose own landmarks nearly coincide (closed lips)
    still warps.
    """
    from scipy.spatial import Delaunay

    from argen_ray.data.demo.identity import neutral_template

    face = neutral_template().astype(np.float64)
    centre = face[INNER_MOUTH].mean(0)
    face[INNER_MOUTH, 0] = centre[0] + 0.8 * (face[INNER_MOUTH, 0] - centre[0])
    face[[61, 62, 63], 1] -= 0.03
    face[[65, 66, 67], 1] += 0.03
    return Delaunay(np.vstack([face, _ring()])).simplices.astype(np.int32)


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def denoised(image: np.ndarray) -> np.ndarray:
    """The image without its own sensor noise: non-local means at 3x the image's estimated noise
    (measured on demo references: Immerkaer's estimate 0.95 -> 0.46, edges kept)."""
    import cv2

    from argen_ray.data.dynamics import noise_sigma

    strength = 3.0 * noise_sigma(image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    if strength < 0.5:
        return image
    return cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(image), None, strength, strength, 5, 15)


class FaceWarper:
    """Renders one reference face at any target landmark positions (piecewise-affine warp)."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray):
        import cv2

        self.image = image
        self.landmarks = np.asarray(landmarks, dtype=np.float64)
        self.origin, self.ex, self.ey, self.iod = face_frame(self.landmarks)
        self.triangles = mesh_triangles()
        # Grow the ring where this face's landmarks reach further out than the canonical face.
        cx, cy = RING_CENTRE
        local = to_face_frame(self.landmarks)
        reach = np.sqrt(((local[:, 0] - cx) / RING_AXES[0]) ** 2 + ((local[:, 1] - cy) / RING_AXES[1]) ** 2).max()
        self.ring_scale = max(1.0, float(reach) / RING_CLEARANCE)
        self.ring = self._to_image(_ring(self.ring_scale))
        h, w = image.shape[:2]
        lo = np.floor(self.ring.min(0)).astype(int)
        hi = np.ceil(self.ring.max(0)).astype(int) + 1
        self.x0, self.y0 = max(0, lo[0]), max(0, lo[1])
        self.x1, self.y1 = min(w, hi[0]), min(h, hi[1])
        ys, xs = np.mgrid[self.y0:self.y1, self.x0:self.x1]
        self.grid = np.stack([xs, ys, np.ones_like(xs)], axis=-1).astype(np.float64)  # (h', w', 3)
        # Mouth-cavity colour: a darkened mean of the lip pixels (between outer and inner lips).
        lips = np.zeros((h, w), np.uint8)
        cv2.fillPoly(lips, [np.round(self.landmarks[OUTER_MOUTH]).astype(np.int32)], 1)
        cv2.fillPoly(lips, [np.round(self.landmarks[INNER_MOUTH]).astype(np.int32)], 0)
        lip_pixels = image[lips.astype(bool)]
        lip_colour = lip_pixels.mean(0) if len(lip_pixels) else image.reshape(-1, 3).mean(0)
        self.cavity_colour = CAVITY_DARKNESS * lip_colour.astype(np.float32)
        self.source_mouth_area = _polygon_area(self.landmarks[INNER_MOUTH])
        self.source_mouth_mask = np.zeros((h, w), np.float32)
        cv2.fillPoly(self.source_mouth_mask, [np.round(self.landmarks[INNER_MOUTH] * 16).astype(np.int32)], 1.0,
                     cv2.LINE_AA, 4)

    def _to_image(self, face_points: np.ndarray) -> np.ndarray:
        return self.origin + self.iod * (face_points[:, :1] * self.ex + face_points[:, 1:] * self.ey)

    def render(self, target: np.ndarray) -> np.ndarray:
        """The reference warped so that its 68 landmarks move to `target` (68, 2), an opened mouth
        drawn (`_fill_mouth`)."""
        return self._fill_mouth(self.warp(target), np.asarray(target, dtype=np.float64)[INNER_MOUTH])

    def warp(self, target: np.ndarray) -> np.ndarray:
        """The piecewise-affine warp alone; any image dtype (the appearance model warps float maps)."""
        import cv2

        src = np.vstack([self.landmarks, self.ring])
        dst = np.vstack([np.asarray(target, dtype=np.float64), self.ring])
        s, d = src[self.triangles], dst[self.triangles]                       # (T, 3, 2)
        d_h = np.concatenate([d, np.ones((len(d), 3, 1))], axis=2)            # (T, 3, 3) rows [x y 1]
        area = np.abs(np.linalg.det(d_h)) / 2
        keep = area > 1e-3                                                    # collapsed triangles cover no pixel
        # Per triangle the affine map dst -> src: A @ [x, y, 1] = source position.
        affine = np.zeros((len(d), 2, 3))
        affine[keep] = np.swapaxes(np.linalg.solve(d_h[keep], s[keep]), 1, 2)
        # Rasterise triangle ids at 1/16-pixel precision; pixels outside every triangle keep -1.
        ids = np.full((self.y1 - self.y0, self.x1 - self.x0), -1, np.int32)
        corners = np.round((d - np.array([self.x0, self.y0])) * 16).astype(np.int32)  # all at once: the loop is hot
        for t in np.flatnonzero(keep):
            cv2.fillConvexPoly(ids, corners[t], int(t), cv2.LINE_8, 4)
        inside = ids >= 0
        mapped = np.einsum("nij,nj->ni", affine[ids[inside]], self.grid[inside])
        map_xy = self.grid[..., :2].copy()
        map_xy[inside] = mapped
        frame = self.image.copy()
        frame[self.y0:self.y1, self.x0:self.x1] = cv2.remap(
            self.image, map_xy[..., 0].astype(np.float32), map_xy[..., 1].astype(np.float32),
            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        return frame

    def _fill_mouth(self, frame: np.ndarray, inner_mouth: np.ndarray) -> np.ndarray:
        """Redraw a mouth that opened wider than in the reference.

        Stretching the reference's mouth (teeth, or the thin dark line of closed lips) over the
        opening looks wrong, so the reference's mouth interior moves rigidly with the upper
        inner lip (upper teeth stay under the upper lip) and the rest of the opening is the
        dark mouth cavity.
        """
        import cv2

        if _polygon_area(inner_mouth) <= 1.05 * self.source_mouth_area + 0.5:
            return frame
        h, w = frame.shape[:2]
        opening = np.zeros((h, w), np.float32)
        cv2.fillPoly(opening, [np.round(inner_mouth * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
        opening = cv2.GaussianBlur(opening, (0, 0), max(0.5, 0.015 * self.iod))[..., None]
        shift = inner_mouth[1:4].mean(0) - self.landmarks[61:64].mean(0)
        move = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        teeth = cv2.warpAffine(self.image, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        teeth_mask = cv2.warpAffine(self.source_mouth_mask, move, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        inside = teeth_mask * teeth.astype(np.float32) + (1 - teeth_mask) * self.cavity_colour
        out = frame.astype(np.float32) * (1 - opening) + inside * opening
        return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------
@dataclass
class _Reference:
    """A prepared reference image (cached per image: a group warps one image G times)."""

    key: bytes                   # digest of the image as given
    image: np.ndarray            # the reference, downscaled to warp.max_side
    points: np.ndarray           # its 68 landmarks
    _source: np.ndarray | None = None

    @property
    def source(self) -> np.ndarray:
        """The reference without its own sensor noise (`denoised`), computed once: non-local
        means is the costliest step of a short clip."""
        if self._source is None:
            self._source = denoised(self.image)
        return self._source


@dataclass
class _Plan:
    """A checked request with its prepared reference, target AUs and intensity schedule."""

    request: GenerationRequest
    reference: _Reference
    aus: dict[int, float]        # target intensities, OpenFace 0-5 (this seed's draw inside the bands)
    schedule: np.ndarray         # (N,) fractions of the target per new frame
    landmarks_s: float
    variation: ClipVariation     # what the seed chose (timing, head path, noise)

    @property
    def positions(self) -> np.ndarray:
        return keyframe_positions(self.request.steps, len(self.schedule))

    def clip_key(self) -> tuple:
        """What the rendered clip depends on. Steps enter only through the keyframe positions, so
        every T >= the clip's new-frame count gives one clip (short RL candidates)."""
        r = self.request
        return (self.reference.key, self.positions.tobytes(), self.schedule.tobytes(), tuple(sorted(self.aus.items())),
                r.seed, r.prompt, r.emotion)


@register_generator("warp")
class WarpGenerator:
    """The CPU warp backend, built from `cfg.generator` (a `GeneratorConfig`)."""

    REFERENCE_CACHE = 64  # references kept with their landmarks (a group warps one image G times)

    def __init__(self, cfg):
        self.cfg = cfg
        self.warp_cfg = cfg.warp
        self.model_id = MODEL_ID
        self._references: OrderedDict[bytes, _Reference] = OrderedDict()
        self.dynamics = self._read_dynamics(cfg.warp.dynamics)
        # What writing a clip adds to its noise estimate (measured with the dynamics): off the target.
        self.codec_noise = float(((self.dynamics or {}).get("codec") or {}).get("noise", 0.0))
        self.appearance = self._read_appearance(cfg.warp.appearance)

    @staticmethod
    def _read_dynamics(path) -> dict | None:
        """The measured real-clip dynamics, or None when they are not measured yet (a bare config,
        or a run before its data stage): then clips are still, noiseless and start at frame 1."""
        from pathlib import Path

        from argen_ray.data.dynamics import read_dynamics

        return read_dynamics(path) if path is not None and Path(path).is_file() else None

    @staticmethod
    def _read_appearance(path) -> AppearanceTransfer | None:
        """The learned expression appearance (`warp_appearance`), or None when it is not learned
        yet: then keyframes show what the warp moves and nothing else."""
        from pathlib import Path

        return AppearanceTransfer(read_appearance(path)) if path is not None and Path(path).is_file() else None

    # -- 1. inputs ----------------------------------------------------------------------------
    def plan(self, request: GenerationRequest) -> _Plan:
        """Check one request and prepare everything but the frames (fails before any rendering)."""
        name = request.request_id or "<unnamed>"
        num_frames = request.num_frames if request.num_frames is not None else self.cfg.num_frames
        if int(num_frames) < 2:
            raise WarpError(f"request {name!r}: num_frames={num_frames}; a clip needs the reference and >= 1 new frame")
        if int(request.steps) < 1:
            raise WarpError(f"request {name!r}: steps={request.steps}; at least one keyframe must be solved")
        try:
            curve = intensity_schedule(request.guidance, int(num_frames) - 1, self.cfg.w_min, self.cfg.w_max)
        except WarpError as exc:
            raise WarpError(f"request {name!r}: {exc}") from None
        fractions = {au: v / OPENFACE_MAX for au, v in self.target_aus(request).items()}
        rng = variation_rng(request.seed, f"{request.prompt}|{request.emotion}")
        variation = draw_variation(rng, class_profiles(self.dynamics, request.emotion), int(num_frames), fractions,
                                   self.codec_noise)
        aus = {au: OPENFACE_MAX * v for au, v in variation.amplitudes.items()}
        schedule = expression_schedule(curve, variation.onset, variation.apex, variation.hold)
        t0 = time.perf_counter()
        reference = self.prepare_reference(request.image, f"request {name!r}")
        return _Plan(request, reference, aus, schedule, time.perf_counter() - t0, variation)

    def target_aus(self, request: GenerationRequest) -> dict[int, float]:
        """The request's target AU intensities on OpenFace's 0-5 scale, stand-ins applied (before
        the seed's draw inside each intensity band)."""
        name = request.request_id or "<unnamed>"
        if not request.aus and not request.emotion:
            raise WarpError(f"request {name!r}: neither target AUs nor an emotion to take the prototype AUs from")
        try:
            if request.aus:
                aus = dict(request.aus)
            else:
                from argen_ray.asi.knowledge import prototype_aus

                aus = prototype_aus(request.emotion)
            out: dict[int, float] = {}
            for key, value in aus.items():
                au = au_number(key)
                au = STAND_INS.get(au, au)
                out[au] = max(out.get(au, 0.0), float(value) * self.warp_cfg.au_scale)
            return check_intensities(out)
        except ArgenError as exc:  # an unknown emotion, AU or intensity
            raise WarpError(f"request {name!r}: target AUs {dict(request.aus) or request.emotion!r}: {exc} "
                            f"(intensities are scaled by generator.warp.au_scale={self.warp_cfg.au_scale})") from None

    def prepare_reference(self, image: np.ndarray, name: str) -> _Reference:
        """The reference downscaled to warp.max_side with its 68 landmarks, cached per image."""
        import cv2

        from argen_ray.faces import detect_landmarks

        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise WarpError(f"{name}: image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image)
        key = hashlib.blake2b(repr(image.shape).encode() + image.tobytes(), digest_size=16).digest()
        if key in self._references:
            self._references.move_to_end(key)
            return self._references[key]
        found = detect_landmarks(image)  # on the full image: dlib's detector needs ~80 px faces
        if found is None:
            raise WarpError(f"{name}: no face found in the reference image ({image.shape[1]}x{image.shape[0]}); "
                            "the warp backend needs a frontal face")
        points = found.points.astype(np.float64)
        scale = self.warp_cfg.max_side / max(image.shape[:2])
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            points = points * (np.array(size) / np.array(image.shape[1::-1]))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        self._references[key] = reference = _Reference(key, image, points)
        if len(self._references) > self.REFERENCE_CACHE:
            self._references.popitem(last=False)
        return reference

    # -- 2. generation ------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One clip per request; every request is checked before any clip is rendered. Requests
        of one call that make the same clip (`_Plan.clip_key`: e.g. the oracle evaluation's
        actions that differ only in T >= the candidate's new frames) render it once."""
        plans = [self.plan(r) for r in requests]
        rendered: dict[tuple, GenerationResult] = {}
        out = []
        for plan in plans:
            key = plan.clip_key()
            if key not in rendered:
                rendered[key] = result = self.render_clip(plan)
            else:
                first = rendered[key]
                result = GenerationResult(frames=first.frames.copy(), nfe=first.nfe, timings={"reused_s": 0.0},
                                          model_id=self.model_id, request_id=plan.request.request_id)
            out.append(result)
        return out

    def render_clip(self, plan: _Plan) -> GenerationResult:
        """Solve the keyframes, cross-fade the frames between them."""
        t0 = time.perf_counter()
        image, points, num_new = plan.reference.image, plan.reference.points, len(plan.schedule)
        # With fresh per-frame noise to come, the new frames are warped from the reference without
        # its own noise (else that one noise pattern would be frozen into every frame); frame 0 stays
        # the reference as given.
        source = plan.reference.source if plan.variation.frame_change > 0 else image
        warper = FaceWarper(source, points)
        positions = plan.positions
        keyframes = {0: source}
        for n in positions:
            level = plan.schedule[n - 1]
            target = au_to_landmarks(points, {au: level * v for au, v in plan.aus.items()})
            keyframes[int(n)] = warper.render(target)
            if self.appearance is not None:  # what real faces of the class show beyond the movement
                keyframes[int(n)] = self.appearance.apply(keyframes[int(n)], plan.request.emotion, points, target)
        t1 = time.perf_counter()
        frames = np.empty((num_new + 1, *image.shape), np.uint8)
        anchors = np.concatenate([[0], positions])
        for a, b in zip(anchors[:-1], anchors[1:]):
            start, end = keyframes[int(a)].astype(np.float32), keyframes[int(b)].astype(np.float32)
            for n in range(a, b + 1):  # a dissolve between neighbouring keyframes
                u = (n - a) / (b - a)
                frames[n] = np.round((1 - u) * start + u * end).astype(np.uint8)
        frames[0] = image
        t2 = time.perf_counter()
        self._move_and_add_noise(frames, plan)
        return GenerationResult(frames=frames, nfe=len(positions),
                                timings={"landmarks_s": plan.landmarks_s, "keyframes_s": t1 - t0,
                                         "interpolate_s": t2 - t1, "motion_noise_s": time.perf_counter() - t2},
                                model_id=self.model_id, request_id=plan.request.request_id)

    @staticmethod
    def _move_and_add_noise(frames: np.ndarray, plan: _Plan) -> None:
        """Frames 1..N in place: the drawn real clip's head path, then fresh sensor noise with its
        grain until the clip changes from frame to frame as much as it (frame 0 stays as it is)."""
        v = plan.variation
        if v.pose is not None:
            origin, _, _, iod = face_frame(plan.reference.points)
            for n in range(1, len(frames)):
                frames[n] = move_head(frames[n], v.pose[n], origin, iod)
        if v.frame_change > 0:
            rng = variation_rng(plan.request.seed, f"noise|{plan.request.prompt}|{plan.request.emotion}")
            add_sensor_noise(frames, v.frame_change, v.noise_blur, rng, v.noise)

    # -- 3. policy state ----------------------------------------------------------------------
    def encode_state(self, prompts: list[str], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(MiniLM prompt embeddings (B, 384), reference embeddings (B, 142)), float32.

        A reference's embedding: its 68 landmarks in face-frame units (136 values: face shape,
        independent of position, size and roll) and the mean and standard deviation of each
        colour channel inside the face box, scaled to about [-1, 1] (6 values).
        """
        from argen_ray.asi.retrieval import load_embedder

        if len(prompts) != len(images):
            raise WarpError(f"encode_state: {len(prompts)} prompts but {len(images)} images")
        rows = []
        for i, img in enumerate(images):
            reference = self.prepare_reference(img, f"encode_state: image {i}")
            image, points = reference.image, reference.points
            lo = np.clip(np.floor(points.min(0)).astype(int), 0, None)
            hi = np.ceil(points.max(0)).astype(int) + 1
            face = image[lo[1]:hi[1], lo[0]:hi[0]].reshape(-1, 3).astype(np.float32) / 255.0
            stats = np.concatenate([face.mean(0) * 2 - 1, face.std(0) * 4 - 1])
            rows.append(np.concatenate([to_face_frame(points).reshape(-1), stats]))
        text = load_embedder(self.warp_cfg.text_encoder).encode(list(prompts))
        return np.asarray(text, np.float32), np.asarray(rows, np.float32).reshape(len(images), -1)


__all__ = ["FaceWarper", "STAND_INS", "WarpError", "WarpGenerator", "intensity_schedule",
           "keyframe_positions", "mesh_triangles"]
