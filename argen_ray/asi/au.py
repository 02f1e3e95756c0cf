"""Action-unit (AU) estimation behind one interface: frames -> per-frame AU intensities.

Every backend returns an `AUReading` over OpenFace's intensity AUs (`AU_NAMES`, 0-5 scale).
Backends, registered by name in `AU_BACKENDS`:

- ``openface-csv``: reads the OpenFace / py-feat style CSV shipped with a dataset
  (`record.au_csv`, columns ``AU01_r`` ... or ``AU01`` ...).
- ``landmark``: the offline real-model backend. dlib's 68 landmarks (shipped in
  face-recognition-models, see `argen_ray.faces`) -> face-size-normalised geometric measures ->
  a linear calibration (`landmark_au_calibration.yaml`) to intensities. Landmark readings are
  trustworthy as changes within one person, not as absolute values across people (shared
  notes), so later stages use `AUReading.relative()`.
- ``py-feat``: py-feat's own detector (`Detectorv1`), where py-feat and its hub weights are
  installed (a scorer actor's runtime env on a cluster; not in the default environment).
"""
from __future__ import annotations

from argen_ray.errors import ArgenError

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

if TYPE_CHECKING:  # the data package imports nothing from here; avoid a cycle at import time
    from argen_ray.data.records import ClipRecord

# OpenFace 2.x intensity AUs (the `AUxx_r` columns), in OpenFace's order.
AU_NAMES: list[str] = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
                       "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
AU_MAX = 5.0

CALIBRATION_FILE = Path(__file__).with_name("landmark_au_calibration.yaml")


class AUEstimationError(ArgenError, ValueError):
    """AU estimation got bad input (frames, CSV, backend name); the message names it."""


@dataclass
class AUReading:
    """AU intensities of F frames.

    `values` are on OpenFace's 0-5 scale (NaN rows where no face was found). `signed`, when a
    backend has it, holds the same calibrated readings before clipping at 0 and 5, so a change
    within one person is not cut off by a population-level zero point; `relative()` uses it.
    """

    names: list[str]
    values: np.ndarray                 # (F, len(names)) float
    face_found: np.ndarray             # (F,) bool
    signed: np.ndarray | None = field(default=None, repr=False)
    # What `values` measure: "intensity" (OpenFace 0-5) or "presence" (a classifier's probability
    # that the AU is active, 0-1; py-feat's XGB model). A presence probability is not an intensity:
    # it is kept on its own 0-1 scale, never stretched to 0-5.
    kind: str = "intensity"
    # Per AU, where `signed` is given: True when another AU reads one of its measures with the
    # opposite sign (AU12/AU15 on lip-corner height, AU01/AU04 on inner-brow height). The
    # calibration's zero point separates such a pair, so a reading below it belongs to the
    # antagonist; an AU without one owns all of its measure's movement.
    antagonist: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1, len(self.names))
        self.face_found = np.asarray(self.face_found, dtype=bool).reshape(-1)
        if self.face_found.shape[0] != self.values.shape[0]:
            raise AUEstimationError(f"AUReading: {self.values.shape[0]} value rows but "
                                    f"{self.face_found.shape[0]} face flags")
        if self.signed is not None:
            self.signed = np.asarray(self.signed, dtype=np.float64).reshape(self.values.shape)
        if self.antagonist is not None:
            self.antagonist = np.asarray(self.antagonist, dtype=bool).reshape(-1)
            if self.antagonist.shape[0] != len(self.names):
                raise AUEstimationError(f"AUReading: {self.antagonist.shape[0]} antagonist flags for "
                                        f"{len(self.names)} AUs")
        if self.kind not in ("intensity", "presence"):
            raise AUEstimationError(f"AUReading kind must be 'intensity' or 'presence', got {self.kind!r}")

    @property
    def scale_max(self) -> float:
        """The top of `values`' scale: 5 for intensities, 1 for presence probabilities."""
        return AU_MAX if self.kind == "intensity" else 1.0

    def __len__(self) -> int:
        return self.values.shape[0]

    def relative(self, reference: int | np.ndarray = 0) -> np.ndarray:
        """Readings minus a reference of the same person: a frame index or a vector of len(names).

        NaN where either the frame or the reference has no face.
        """
        base = self.signed if self.signed is not None else self.values
        if isinstance(reference, (int, np.integer)):
            if not -len(self) <= int(reference) < len(self):
                raise AUEstimationError(f"reference frame {reference} outside 0..{len(self) - 1}")
            ref = base[int(reference)]
        else:
            ref = np.asarray(reference, dtype=np.float64).reshape(-1)
            if ref.shape[0] != len(self.names):
                raise AUEstimationError(f"reference vector has {ref.shape[0]} entries, "
                                        f"expected {len(self.names)} ({', '.join(self.names)})")
        return base - ref[None, :]

    def frame(self, index: int) -> dict[str, float]:
        """One frame's readings as {AU name: intensity}."""
        return {n: float(v) for n, v in zip(self.names, self.values[index])}


class AUEstimator(Protocol):
    """frames: (F, H, W, 3) uint8 RGB; record: the clip they come from (CSV backends read its
    AU file); frame_indices: the clip positions of those frames (CSV backends read those rows;
    pixel backends read the frames as given). One reading row per frame."""

    name: str

    def estimate(self, frames: np.ndarray | None, *, record: "ClipRecord | None" = None,
                 frame_indices: np.ndarray | None = None) -> AUReading: ...


def check_frame_indices(frames: np.ndarray, frame_indices: np.ndarray | None) -> None:
    """Pixel backends: positions, when given, must describe exactly the given frames."""
    if frame_indices is not None and len(np.asarray(frame_indices).reshape(-1)) != len(frames):
        raise AUEstimationError(f"{len(np.asarray(frame_indices).reshape(-1))} frame indices for "
                                f"{len(frames)} frames: indices give the clip positions of the frames passed")


def check_frames(frames: np.ndarray, what: str = "frames") -> np.ndarray:
    """(F,H,W,3) uint8 RGB, or a clear error naming what is wrong."""
    arr = np.asarray(frames)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise AUEstimationError(f"{what}: expected (F, H, W, 3) RGB frames, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise AUEstimationError(f"{what}: no frames")
    if arr.dtype != np.uint8:
        raise AUEstimationError(f"{what}: expected uint8 pixels, got {arr.dtype}")
    return arr


# --------------------------------------------------------------------------- openface-csv
class OpenFaceCSVEstimator:
    """Reads AU intensities from an OpenFace (`AU01_r`) or py-feat (`AU01`) CSV of the clip.

    Row i of the CSV is frame i of the clip. OpenFace's `success` column (when present) marks
    frames without a tracked face. AUs missing from the CSV are NaN.
    """

    name = "openface-csv"

    def __init__(self, csv_path: str | os.PathLike | None = None):
        self.csv_path = Path(csv_path) if csv_path is not None else None

    def estimate(self, frames: np.ndarray | None, *, record: "ClipRecord | None" = None,
                 frame_indices: np.ndarray | None = None) -> AUReading:
        path = self.csv_path or (Path(record.au_csv) if record is not None and record.au_csv else None)
        if path is None:
            clip = getattr(record, "clip_id", None)
            raise AUEstimationError(f"openface-csv: clip {clip!r} has no AU CSV (record.au_csv is empty); "
                                    "use asi.au.backend=landmark for datasets without AU annotations")
        table = _read_au_csv(path)
        n_rows = len(table["success"])
        if frame_indices is None:
            count = n_rows if frames is None else len(check_frames(frames))
            frame_indices = np.arange(count)
        idx = np.asarray(frame_indices, dtype=int).reshape(-1)
        bad = idx[(idx < 0) | (idx >= n_rows)]
        if len(bad):
            raise AUEstimationError(f"{path}: has {n_rows} frame rows, frame index {int(bad[0])} requested")
        values = table["values"][idx]
        found = table["success"][idx]
        values[~found] = np.nan
        return AUReading(names=list(AU_NAMES), values=values, face_found=found)


@lru_cache(maxsize=256)
def _read_au_csv_cached(path: str, mtime: float) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as exc:  # pandas' ParserError is a ValueError
        raise AUEstimationError(f"{path}: not a readable CSV ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    values = np.full((len(df), len(AU_NAMES)), np.nan)
    found_any = False
    for j, name in enumerate(AU_NAMES):
        for col in (f"{name}_r", name):
            if col in df.columns:
                values[:, j] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
                found_any = True
                break
    if not found_any:
        raise AUEstimationError(f"{path}: no AU intensity columns (expected {AU_NAMES[0]}_r ... or "
                                f"{AU_NAMES[0]} ...)")
    if "success" in df.columns:
        success = pd.to_numeric(df["success"], errors="coerce").fillna(0).to_numpy() > 0
    else:
        success = ~np.all(np.isnan(values), axis=1)
    return {"values": values, "success": success}


def _read_au_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise AUEstimationError(f"AU CSV {p} does not exist")
    table = _read_au_csv_cached(str(p.resolve()), p.stat().st_mtime)
    return {k: v.copy() for k, v in table.items()}


# --------------------------------------------------------------------------- landmark
# Geometric measures of a face, in inter-ocular units (distance between the eye centres) in a
# frame aligned to the eye line (x along it, y downwards, origin between the eyes), so they do
# not change with face size or in-plane rotation. iBUG 68-point indices.
MEASURES: list[str] = ["inner_brow_height", "outer_brow_height", "brow_gap", "eye_opening",
                       "lower_lid_drop", "nose_length", "nose_to_upper_lip", "corner_lift",
                       "mouth_width", "lip_gap", "lip_thickness", "chin_to_lower_lip", "jaw_drop"]


NEUTRAL_NOSE_TIP = 0.5854  # eye line -> nose tip (point 30) of py-feat's neutral face, inter-ocular units
# How a jaw drop alone moves the lip corners, per unit of inner-lip gap (lower minus upper lip):
# they sink JAW_CORNER_SHARE of it below the upper inner lip and the mouth narrows by
# JAW_NARROWING. Measured: py-feat's AU->mesh model (feat/resources/au_to_mesh_pls_v4.npz, a
# linear fit on real faces), its AU26 row: corners 0.27 of the gap, narrowing 0.21; the demo
# renderer's AU26 (+AU25): 0.32-0.37 and 0.22. The share is set to 0.4, above both: on
# py-feat's detector output for two real clips (feat/tests/data/001.csv, 002.csv) AU12 agrees
# less as the share falls (Pearson 0.44/0.55 at the midline 0.5, 0.35/0.42 at 0.4, 0.26/0.24
# at 0.3), and a real open-mouthed laugh (WolfgangLanger frame 300 vs 240) reads as much lip
# stretch as smile at 0.35 and more below (AU12 / AU20: 1.9 / 0.9 at 0.4). docs/asi.md has the numbers.
JAW_CORNER_SHARE = 0.4
JAW_NARROWING = 0.2


def face_measures(points: np.ndarray) -> np.ndarray:
    """The `MEASURES` of one face from its (68, 2) iBUG landmarks.

    The lip corners move with the jaw: when it drops they travel down part of the way with the
    lower lip and in towards each other. `corner_lift` is the corners' height above where a jaw
    drop alone leaves them (`JAW_CORNER_SHARE` of the lip gap below the upper inner lip), and
    `mouth_width` adds back the narrowing a jaw drop alone causes (`JAW_NARROWING` per unit of
    lip gap). So an open jaw reads neither as lip-corner depression (AU15) nor as a lip stretch
    lost (AU20): those read the corners' own movement. The jaw has its own measures (`lip_gap`,
    `jaw_drop`).
    """
    p = np.asarray(points, dtype=np.float64).reshape(68, 2)
    right_eye, left_eye = p[36:42].mean(0), p[42:48].mean(0)  # subject's right is image left
    axis = left_eye - right_eye
    iod = float(np.hypot(*axis))
    if iod <= 1e-6:
        raise AUEstimationError("landmarks: both eye centres coincide; not a face")
    c, s = axis / iod
    rot = np.array([[c, s], [-s, c]])
    q = (p - (right_eye + left_eye) / 2) @ rot.T / iod
    x, y = q[:, 0], q[:, 1]
    # Vertical unit: the eye line to the nose tip (point 30), which no AU moves. Head pitch and
    # long or short faces scale every vertical distance; dividing by this one removes that, as the
    # inter-ocular distance does horizontally. Scaled to py-feat's neutral face's value.
    if y[30] <= 1e-6:
        raise AUEstimationError("landmarks: nose tip not below the eyes; not an upright face")
    y = y * (NEUTRAL_NOSE_TIP / y[30])
    ys = lambda *i: float(np.mean(y[list(i)]))  # noqa: E731 - mean height of some points
    gap = max(0.0, ys(65, 66, 67) - ys(61, 62, 63))  # inner lips apart (0 when pressed together)
    return np.array([
        -ys(19, 20, 21, 22, 23, 24),                                   # inner_brow_height
        -ys(17, 18, 25, 26),                                           # outer_brow_height
        x[22] - x[21],                                                 # brow_gap
        (ys(40, 41, 46, 47) - ys(37, 38, 43, 44)),                     # eye_opening
        ys(40, 41, 46, 47) - ys(36, 39, 42, 45),                       # lower_lid_drop
        y[33] - y[27],                                                 # nose_length
        y[51] - y[33],                                                 # nose_to_upper_lip
        ys(61, 62, 63) + JAW_CORNER_SHARE * gap - ys(48, 54),          # corner_lift (up > 0)
        x[54] - x[48] + JAW_NARROWING * gap,                           # mouth_width
        gap,                                                           # lip_gap
        (ys(61, 62, 63) - ys(50, 51, 52)) + (ys(56, 57, 58) - ys(65, 66, 67)),  # lip_thickness
        y[8] - y[57],                                                  # chin_to_lower_lip
        y[8] - y[33],                                                  # jaw_drop
    ])


@dataclass(frozen=True)
class LandmarkCalibration:
    """intensity = sum_j gain[au, j] * (measure_j - neutral_j), clipped to 0..5 for `values`."""

    neutral: np.ndarray   # (len(MEASURES),)
    gains: np.ndarray     # (len(AU_NAMES), len(MEASURES))
    source: str

    @classmethod
    def load(cls, path: str | os.PathLike = CALIBRATION_FILE) -> "LandmarkCalibration":
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise AUEstimationError(f"landmark calibration {path}: cannot read ({exc})") from None
        neutral_map, gain_map = data.get("neutral", {}), data.get("gains", {})
        missing = [m for m in MEASURES if m not in neutral_map]
        if missing:
            raise AUEstimationError(f"landmark calibration {path}: neutral values missing for {missing}")
        unknown_au = sorted(set(gain_map) - set(AU_NAMES))
        if unknown_au or set(AU_NAMES) - set(gain_map):
            raise AUEstimationError(f"landmark calibration {path}: gains must list exactly {AU_NAMES} "
                                    f"(unknown: {unknown_au}, missing: {sorted(set(AU_NAMES) - set(gain_map))})")
        gains = np.zeros((len(AU_NAMES), len(MEASURES)))
        for i, au in enumerate(AU_NAMES):
            for measure, gain in (gain_map[au] or {}).items():
                if measure not in MEASURES:
                    raise AUEstimationError(f"landmark calibration {path}: {au} uses unknown measure "
                                            f"{measure!r} (known: {MEASURES})")
                gains[i, MEASURES.index(measure)] = float(gain)
        neutral = np.array([float(neutral_map[m]) for m in MEASURES])
        return cls(neutral=neutral, gains=gains, source=str(data.get("source", "")))

    def intensities(self, measures: np.ndarray) -> np.ndarray:
        """(F, len(MEASURES)) measures -> (F, len(AU_NAMES)) signed intensities."""
        return (np.asarray(measures) - self.neutral[None, :]) @ self.gains.T

    @property
    def antagonists(self) -> np.ndarray:
        """Per AU: does another AU read one of its measures with the opposite sign?"""
        g = self.gains
        return np.array([bool(np.any((g[i] != 0) & np.any(g * g[i] < 0, axis=0))) for i in range(len(g))])


class LandmarkAUEstimator:
    """Offline AU intensities from dlib's 68 landmarks and calibrated geometric measures.

    `values` are absolute readings (0-5) against a population-neutral face (py-feat's neutral
    68-point face); they are only trustworthy as changes within one person, so compare frames
    of one clip or a clip with its own reference through `relative()`.
    """

    name = "landmark"

    def __init__(self, calibration: str | os.PathLike | None = None, track: bool = False):
        self.calibration = LandmarkCalibration.load(calibration or CALIBRATION_FILE)
        # Video mode (`argen_ray.faces`): look for each frame's face near the previous frame's,
        # for frames of one clip in order (the reward scorer); whole-frame search otherwise.
        self.track = track

    def estimate(self, frames: np.ndarray | None, *, record: "ClipRecord | None" = None,
                 frame_indices: np.ndarray | None = None) -> AUReading:
        from argen_ray.faces import detect_landmarks

        if frames is None:
            raise AUEstimationError("landmark AU backend needs the frames themselves (got None)")
        frames = check_frames(frames)
        check_frame_indices(frames, frame_indices)
        points = np.full((len(frames), 68, 2), np.nan)
        previous = None
        for i, frame in enumerate(frames):
            found = detect_landmarks(frame, near=previous.box if self.track and previous is not None else None)
            if found is not None:
                points[i] = found.points
            previous = found
        return self.read_landmarks(points)

    def read_landmarks(self, points: np.ndarray) -> AUReading:
        """AU readings of faces whose 68 iBUG landmarks are already known: (F, 68, 2) points in
        pixels, any scale (another tracker's, e.g. OpenFace's `x_i, y_i`); NaN rows: no face."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim == 2:
            pts = pts[None]
        if pts.ndim != 3 or pts.shape[1:] != (68, 2):
            raise AUEstimationError(f"landmarks: expected (F, 68, 2) iBUG points, got shape {pts.shape}")
        measures = np.full((len(pts), len(MEASURES)), np.nan)
        for i, face in enumerate(pts):
            if np.isfinite(face).all():
                measures[i] = face_measures(face)
        signed = self.calibration.intensities(measures)
        return AUReading(names=list(AU_NAMES), values=np.clip(signed, 0.0, AU_MAX),
                         face_found=~np.isnan(measures[:, 0]), signed=signed,
                         antagonist=self.calibration.antagonists)


# --------------------------------------------------------------------------- py-feat
# py-feat's AU columns that OpenFace names differently: AU43 (eyes closed) stands for AU45.
PYFEAT_COLUMN = {"AU45": "AU43"}


class PyFeatAUEstimator:
    """py-feat's detector (retinaface + mobilefacenet landmarks + XGB AU model).

    py-feat 2.1.5 downloads its weights from the Hugging Face hub into its package's resources
    folder and pulls a CUDA torchvision; it runs in a scorer actor's own runtime env
    (cluster/runtime_envs/pyfeat.yaml), not in the default environment. py-feat's XGB AU outputs
    are presence probabilities (`predict_proba(...)[:, 1]` in its AU detector), not intensities:
    the reading keeps them on their 0-1 scale with `kind="presence"`. Largest-score face per frame.
    """

    name = "py-feat"

    def __init__(self, device: str = "cpu", batch_size: int = 8):
        try:
            from feat import Detectorv1
        except Exception as exc:  # feat's import fails for many reasons (torchvision, torchcodec)
            raise AUEstimationError(f"py-feat AU backend unavailable: `import feat` failed "
                                    f"({type(exc).__name__}: {exc}); install py-feat with its "
                                    "weights (cluster/runtime_envs/pyfeat.yaml)") from None
        try:
            self.detector = Detectorv1(au_model="xgb", emotion_model=None, identity_model=None,
                                       gaze_model=None, device=device)
        except Exception as exc:  # offline: huggingface_hub's LocalEntryNotFoundError
            raise AUEstimationError(f"py-feat AU backend: detector weights unavailable "
                                    f"({type(exc).__name__}: {exc})") from None
        self.batch_size = batch_size

    def estimate(self, frames: np.ndarray | None, *, record: "ClipRecord | None" = None,
                 frame_indices: np.ndarray | None = None) -> AUReading:
        import torch

        if frames is None:
            raise AUEstimationError("py-feat AU backend needs the frames themselves (got None)")
        frames = check_frames(frames)
        check_frame_indices(frames, frame_indices)
        tensor = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
        fex = self.detector.detect(tensor, data_type="tensor", batch_size=self.batch_size,
                                   progress_bar=False)
        values = np.full((len(frames), len(AU_NAMES)), np.nan)
        found = np.zeros(len(frames), dtype=bool)
        for frame_id, rows in fex.groupby("frame"):
            best = rows.loc[rows["FaceScore"].idxmax()]
            if not np.isfinite(best.get("FaceScore", np.nan)):
                continue
            found[int(frame_id)] = True
            for j, name in enumerate(AU_NAMES):
                col = PYFEAT_COLUMN.get(name, name)
                if col in rows.columns:
                    values[int(frame_id), j] = float(best[col])
        return AUReading(names=list(AU_NAMES), values=values, face_found=found, kind="presence")


AU_BACKENDS: dict[str, Callable[..., AUEstimator]] = {
    OpenFaceCSVEstimator.name: OpenFaceCSVEstimator,
    LandmarkAUEstimator.name: LandmarkAUEstimator,
    PyFeatAUEstimator.name: PyFeatAUEstimator,
}


def get_au_estimator(name: str, **options) -> AUEstimator:
    """Build a registered AU backend by name; unknown names list the known ones."""
    if name not in AU_BACKENDS:
        raise AUEstimationError(f"unknown AU backend {name!r}; known: {', '.join(sorted(AU_BACKENDS))}")
    return AU_BACKENDS[name](**options)
