"""How a dataset's real clips move, measured from the clips themselves (DESIGN 2.5).

Per clip, from its frames and its 68 iBUG landmarks per frame (the dataset's OpenFace CSV when it
ships one, else dlib on every frame):

- the expression curve `d(f)`: mean landmark displacement from frame 0 in face-frame units
  (inter-ocular distance 1, head position, size and roll removed by `to_face_frame`);
- `apex_displacement` = max_f d(f); `onset` / `apex` = the first frame where d reaches 10 % / 90 %
  of that maximum, as a fraction of the clip (0 = first frame, 1 = last); `hold` = the mean of d
  from the apex to the end over the maximum (1: the apex is held to the end, ~0: back to neutral);
- the head pose per frame relative to frame 0 (`pose`: eye-centre shift over IOD in x and y, log
  IOD ratio, roll in degrees) and its spread (`head_translation`, `head_scale`, `head_roll`);
- `frame_change`: mean absolute grey-level difference between consecutive frames;
- `noise`: the sensor-noise standard deviation (Immerkaer's fast noise estimate, median over frames);
- `noise_ratio`: how fine-grained the frame-to-frame noise is: Immerkaer's estimate on the difference
  of consecutive frames over its robust per-pixel spread (1.4826 MAD); white noise gives ~1, noise
  smoothed by the dataset's codec (JPEG frames) less. A generator shapes its fresh per-frame noise
  to this ratio;
- `sharpness`: the grey frames' Laplacian variance (median over frames), a texture statistic.

`measure_dataset_dynamics` aggregates the training clips per class (medians and quartiles plus
every clip's row, so a generator can draw a real clip's timing, head path and noise) and
`write_dynamics` stores them as `<run_dir>/data/dynamics.json`.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from argen_ray.data.labels import EMOTIONS
from argen_ray.errors import ArgenError

if TYPE_CHECKING:
    from argen_ray.data.records import ClipRecord, Dataset

DYNAMICS_VERSION = 2
ONSET_LEVEL, APEX_LEVEL = 0.1, 0.9   # fractions of the clip's maximum displacement
SUMMARY_FIELDS = ("onset", "apex", "hold", "apex_displacement", "frame_change", "head_translation", "head_scale",
                  "head_roll", "noise", "sharpness")
# Immerkaer (1996): sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * N| with this kernel.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


class DynamicsError(ArgenError, ValueError):
    """Clip dynamics cannot be measured or read; the message names the clip or file."""


@dataclass
class ClipDynamics:
    """What one clip does over time (fields in the module doc)."""

    clip_id: str
    label: str
    num_frames: int
    onset: float
    apex: float
    hold: float
    apex_displacement: float
    frame_change: float
    head_translation: float
    head_scale: float
    head_roll: float
    noise: float
    sharpness: float
    noise_ratio: float = 1.0
    pose: list[list[float]] = field(default_factory=list)  # (F, 4): dx, dy (IOD units), log scale, roll (deg)

    def features(self) -> list[float]:
        """The scalar statistics, in `SUMMARY_FIELDS` order (a separability test's features)."""
        return [float(getattr(self, name)) for name in SUMMARY_FIELDS]


def noise_sigma(gray_frame: np.ndarray) -> float:
    """Immerkaer's estimate of additive Gaussian noise in one grey frame (grey levels)."""
    import cv2

    g = np.asarray(gray_frame, np.float32)
    h, w = g.shape
    if h < 3 or w < 3:
        raise DynamicsError(f"noise estimate needs a frame of at least 3x3 pixels, got {w}x{h}")
    response = np.abs(cv2.filter2D(g, -1, _NOISE_KERNEL)[1:-1, 1:-1])
    return float(math.sqrt(math.pi / 2) * response.sum() / (6 * (w - 2) * (h - 2)))


def clip_noise(gray: np.ndarray) -> float:
    """A clip's sensor noise: the median of Immerkaer's estimate over its (F, H, W) grey frames."""
    return float(np.median([noise_sigma(x) for x in np.asarray(gray, np.float32)]))


def clip_frame_change(gray: np.ndarray) -> float:
    """A clip's frame change: the mean absolute difference between consecutive (F, H, W) grey frames."""
    g = np.asarray(gray, np.float32)
    return float(np.abs(np.diff(g, axis=0)).mean()) if len(g) > 1 else 0.0


def noise_ratio(gray: np.ndarray) -> float:
    """Median over consecutive (F, H, W) grey frames of Immerkaer's noise estimate on their
    difference over the difference's robust spread (1.4826 MAD): ~1 for white noise, lower for
    noise with less fine grain. Motion edges are sparse and barely move the median absolute deviation."""
    g = np.asarray(gray, np.float32)
    ratios = []
    for d in np.diff(g, axis=0):
        spread = 1.4826 * float(np.median(np.abs(d - np.median(d))))
        if spread > 1e-6:
            ratios.append(noise_sigma(d) / spread)
    return float(np.median(ratios)) if ratios else 1.0


def expression_curve(landmarks: np.ndarray) -> np.ndarray:
    """(F,) mean displacement of the 68 landmarks from frame 0, head pose removed (IOD units)."""
    from argen_ray.data.demo.au_model import to_face_frame

    local = np.stack([to_face_frame(p) for p in landmarks])
    return np.linalg.norm(local - local[0], axis=2).mean(axis=1)


def head_pose(landmarks: np.ndarray) -> np.ndarray:
    """(F, 4) pose relative to frame 0: eye-centre shift / IOD(0) in x and y, log IOD ratio, roll (deg)."""
    from argen_ray.data.demo.au_model import face_frame

    rows = []
    for p in landmarks:
        origin, ex, _, iod = face_frame(p)
        rows.append([origin[0], origin[1], iod, math.degrees(math.atan2(ex[1], ex[0]))])
    pose = np.asarray(rows)
    iod0 = pose[0, 2]
    return np.stack([(pose[:, 0] - pose[0, 0]) / iod0, (pose[:, 1] - pose[0, 1]) / iod0,
                     np.log(pose[:, 2] / iod0), pose[:, 3] - pose[0, 3]], axis=1)


def timing(curve: np.ndarray) -> tuple[float, float, float]:
    """(onset, apex, hold) of an expression curve; onset and apex as fractions of the clip."""
    d = np.asarray(curve, np.float64)
    peak = float(d.max())
    last = max(len(d) - 1, 1)
    if peak <= 0:
        return 0.0, 0.0, 0.0
    onset = int(np.argmax(d >= ONSET_LEVEL * peak))
    apex = int(np.argmax(d >= APEX_LEVEL * peak))
    return onset / last, apex / last, float(d[apex:].mean() / peak)


def measure_clip(frames: np.ndarray, landmarks: np.ndarray, clip_id: str = "", label: str = "") -> ClipDynamics:
    """Dynamics of one clip from its (F, H, W, 3) uint8 frames and (F, 68, 2) landmarks."""
    from argen_ray.ard.rewards import gray_frames, laplacian_variance

    frames, landmarks = np.asarray(frames), np.asarray(landmarks, np.float64)
    if frames.ndim != 4 or len(frames) < 2:
        raise DynamicsError(f"clip {clip_id!r}: need (F >= 2, H, W, 3) frames, got shape {frames.shape}")
    if landmarks.shape != (len(frames), 68, 2):
        raise DynamicsError(f"clip {clip_id!r}: {len(frames)} frames but landmarks of shape {landmarks.shape}")
    curve = expression_curve(landmarks)
    onset, apex, hold = timing(curve)
    pose = head_pose(landmarks)
    g = gray_frames(np.ascontiguousarray(frames, np.uint8)).astype(np.float32)
    return ClipDynamics(
        clip_id=clip_id, label=label, num_frames=len(frames), onset=onset, apex=apex, hold=hold,
        apex_displacement=float(curve.max()), frame_change=clip_frame_change(g),
        head_translation=float(np.hypot(pose[:, 0], pose[:, 1]).std()), head_scale=float(pose[:, 2].std()),
        head_roll=float(pose[:, 3].std()), noise=clip_noise(g),
        sharpness=float(np.median(laplacian_variance(g.astype(np.uint8)))), noise_ratio=round(noise_ratio(g), 4),
        pose=np.round(pose, 4).tolist())


# --- where the landmarks come from ------------------------------------------------------------
def csv_landmarks(path: str | os.PathLike) -> np.ndarray | None:
    """(F, 68, 2) landmarks from an OpenFace CSV's x_0..x_67, y_0..y_67 columns (None without them)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as exc:
        raise DynamicsError(f"{path}: cannot read the landmark CSV ({exc})") from None
    xs, ys = [f"x_{i}" for i in range(68)], [f"y_{i}" for i in range(68)]
    if not set(xs + ys) <= set(table.columns):
        return None
    return np.stack([table[xs].to_numpy(np.float64), table[ys].to_numpy(np.float64)], axis=2)


def tracked_landmarks(frames: np.ndarray) -> np.ndarray | None:
    """(F, 68, 2) dlib landmarks per frame; a frame without a face keeps the previous frame's
    points. None when frame 0 shows no face (displacements are measured from it)."""
    from argen_ray.faces import detect_landmarks

    points = []
    for frame in frames:
        found = detect_landmarks(np.ascontiguousarray(frame))
        if found is None:
            if not points:
                return None
            points.append(points[-1])
        else:
            points.append(found.points.astype(np.float64))
    return np.stack(points)


def record_landmarks(record: "ClipRecord", frames: np.ndarray) -> np.ndarray | None:
    """The dataset's own landmarks of a clip (its OpenFace CSV) when they fit its frames, else dlib's."""
    if record.au_csv is not None and Path(record.au_csv).is_file():
        points = csv_landmarks(record.au_csv)
        if points is not None and len(points) == len(frames):
            return points
    return tracked_landmarks(frames)


def measure_records(records: Iterable["ClipRecord"], landmarks_of: Callable = record_landmarks,
                    progress: bool = False, desc: str = "clip dynamics") -> tuple[list[ClipDynamics], dict[str, str]]:
    """Dynamics of every clip, and {clip_id: why} for clips that could not be measured."""
    from tqdm.auto import tqdm

    from argen_ray.data.video import VideoReadError, read_video

    measured, skipped = [], {}
    for record in tqdm(list(records), desc=desc, unit="clip", disable=not progress):
        try:
            frames = read_video(record.source)
        except VideoReadError as exc:
            skipped[record.clip_id] = str(exc)
            continue
        points = landmarks_of(record, frames)
        if points is None or len(frames) < 2:
            skipped[record.clip_id] = "no face in the first frame" if points is None else "fewer than 2 frames"
            continue
        measured.append(measure_clip(frames, points, record.clip_id, EMOTIONS[record.label]))
    return measured, skipped


# --- per-class summaries ----------------------------------------------------------------------
def summarize(clips: Sequence[ClipDynamics]) -> dict:
    """Median and quartiles of each statistic over `clips`."""
    table = np.array([c.features() for c in clips], np.float64)
    q = np.percentile(table, [25, 50, 75], axis=0)
    return {name: {"q25": round(float(q[0, i]), 5), "median": round(float(q[1, i]), 5), "q75": round(float(q[2, i]), 5)}
            for i, name in enumerate(SUMMARY_FIELDS)}


def class_dynamics(clips: Sequence[ClipDynamics]) -> dict:
    """{"classes": {emotion: {"clips", "summary", "profiles"}}, "all": summary} of measured clips."""
    by_class: dict[str, list[ClipDynamics]] = {}
    for c in clips:
        by_class.setdefault(c.label, []).append(c)
    return {"version": DYNAMICS_VERSION, "fields": list(SUMMARY_FIELDS),
            "classes": {label: {"clips": len(items), "summary": summarize(items),
                                "profiles": [{k: v for k, v in asdict(c).items() if k != "label"} for c in items]}
                        for label, items in sorted(by_class.items())},
            "all": summarize(clips) if clips else {}}


def measure_dataset_dynamics(dataset: "Dataset", progress: bool = False) -> dict:
    """Per-class dynamics of the dataset's training clips (every clip when it has no train split);
    test clips are never looked at. Clips without a face in their first frame are listed under
    "skipped" (with none measured, "classes" is empty and a warp generator makes still clips)."""
    records = dataset.split("train") or dataset.records
    clips, skipped = measure_records(records, progress=progress)
    return class_dynamics(clips) | {"dataset": dataset.kind, "root": str(dataset.root), "split": "train",
                                    "measured": len(clips), "skipped": skipped}


def codec_noise(records: Sequence["ClipRecord"], lossless: bool, limit: int = 32) -> dict:
    """What writing a clip as mp4 (`video.write_mp4`, `lossless` or not) adds to its sensor-noise estimate:
    the median over up to `limit` clips of sqrt(after^2 - before^2), measured on the dataset's own
    clips put through the round trip. A generator whose clips are written so takes it off its
    noise target, so that its clips measure the real clips' noise as the recognizer reads them."""
    import tempfile

    from argen_ray.ard.rewards import gray_frames
    from argen_ray.data.video import VideoReadError, read_video, write_mp4

    def noise(frames: np.ndarray) -> float:
        return clip_noise(gray_frames(np.ascontiguousarray(frames)))

    added = []
    with tempfile.TemporaryDirectory() as tmp:
        for record in list(records)[:limit]:
            try:
                frames = read_video(record.source)
                after = read_video(write_mp4(Path(tmp) / "clip.mp4", frames, lossless=lossless))
            except VideoReadError:
                continue
            added.append(math.sqrt(max(noise(after[:, :frames.shape[1], :frames.shape[2]]) ** 2 - noise(frames) ** 2, 0.0)))
    return {"lossless": bool(lossless), "clips": len(added), "noise": round(float(np.median(added)), 4) if added else 0.0}


def write_dynamics(dynamics: dict, path: str | os.PathLike) -> Path:
    from argen_ray.io import atomic_write_json

    return atomic_write_json(Path(path), dynamics)


def read_dynamics(path: str | os.PathLike) -> dict:
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DynamicsError(f"{p}: cannot read clip dynamics ({exc}); remeasure with `argen-ray run --from data`") \
            from None
    if data.get("version") != DYNAMICS_VERSION or not isinstance(data.get("classes"), dict):
        raise DynamicsError(f"{p}: not a dynamics file of version {DYNAMICS_VERSION}")
    return data


__all__ = ["ClipDynamics", "DynamicsError", "SUMMARY_FIELDS", "class_dynamics", "clip_frame_change", "clip_noise", "codec_noise", "csv_landmarks", "expression_curve",
           "head_pose", "measure_clip", "measure_dataset_dynamics", "measure_records", "noise_ratio", "noise_sigma",
           "read_dynamics", "record_landmarks", "summarize", "timing", "tracked_landmarks", "write_dynamics"]
