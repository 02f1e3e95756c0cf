"""Write the demo dataset in DFEW's layout, atomically and resumably.

    OUT/
      EmoLabel_DataSplit/train(single-labeled)/set_{1..5}.csv   video_name,label (1-based)
      EmoLabel_DataSplit/test(single-labeled)/set_{1..5}.csv
      Clip/clip_224x224/<id>/<id>_<frame>.jpg                   (DFEW's folder name; size as asked)
      OpenFace/<id>.csv                                          OpenFace 2.x columns: landmarks + AUs
      subjects.csv                                               video_name,subject
      annotations.csv                                            emotion, AU prototype, onset, apex
      preview.jpg, README.txt, demo_dataset.json (completion marker with the parameters)

The dataset is built in a hidden folder beside OUT and renamed onto OUT when complete. A killed
run leaves that folder; the next run with the same parameters resumes it (a clip counts as done
once its OpenFace CSV, written last, exists). A complete OUT with the same parameters is left
untouched; anything else at OUT is refused rather than overwritten.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from argen_ray.data.demo.au_model import OPENFACE_AUS, MODELLED_AUS
from argen_ray.data.demo.clips import (NUM_FOLDS, Clip, ClipPlan, clip_timeline, make_identity, plan_clips,
                                       synthesize_clip)
from argen_ray.data.labels import EMOTIONS
from argen_ray.errors import ArgenError
from argen_ray.io import atomic_write_bytes, atomic_write_json, atomic_write_text

DEMO_VERSION = 1
MARKER = "demo_dataset.json"
FRAMES_DIR = Path("Clip") / "clip_224x224"
SPLIT_DIR = Path("EmoLabel_DataSplit")
OPENFACE_DIR = Path("OpenFace")
FPS = 25.0
JPEG_QUALITY = 95
# OpenFace's presence columns: its intensity AUs plus AU28 (lip suck, presence only; never shown here).
PRESENCE_AUS = tuple(sorted(OPENFACE_AUS + (28,)))
PRESENCE_THRESHOLD = 1.0


class DemoDataError(ArgenError, ValueError):
    """Bad demo-dataset parameters or an output directory that must not be touched."""


@dataclass(frozen=True)
class DemoParams:
    seed: int
    num_identities: int
    clips_per_identity: int
    frames: int
    size: int
    # Every fold's test split holds at least this many clips of every class (0: no floor).
    min_test_clips: int = 0

    def check(self) -> None:
        """Plain messages for values the dataset cannot be built from."""
        if self.num_identities < NUM_FOLDS:
            raise DemoDataError(f"num_identities={self.num_identities}: need at least {NUM_FOLDS} "
                                f"(folds are split by identity)")
        if self.clips_per_identity < 2:
            raise DemoDataError(f"clips_per_identity={self.clips_per_identity}: need at least 2 "
                                f"(one neutral clip per identity plus expressive ones)")
        total, needed = self.num_identities * self.clips_per_identity, self.num_identities + len(EMOTIONS) - 1
        if total < needed:
            raise DemoDataError(f"{self.num_identities} identities x {self.clips_per_identity} clips = {total} clips "
                                f"cannot hold one neutral clip per identity and every other class: "
                                f"raise clips_per_identity")
        if self.frames < 4:
            raise DemoDataError(f"frames={self.frames}: need at least 4 (neutral start, rise, held apex)")
        if not 32 <= self.size <= 1024:
            raise DemoDataError(f"size={self.size}: frame size must be 32..1024 pixels")
        if self.seed < 0:
            raise DemoDataError(f"seed={self.seed}: must be >= 0")
        if self.min_test_clips < 0:
            raise DemoDataError(f"min_test_clips={self.min_test_clips}: must be >= 0")
        if self.min_test_clips:
            self._check_test_floor()

    def _check_test_floor(self) -> None:
        """Every class's clips, dealt over the folds, leave at least `min_test_clips` in each test split."""
        try:
            plans = plan_clips(self.seed, self.num_identities, self.clips_per_identity, self.min_test_clips)
        except ValueError as exc:
            raise DemoDataError(f"min_test_clips={self.min_test_clips}: {exc}; raise num_identities or "
                                f"clips_per_identity") from None
        held = Counter((p.emotion, p.fold) for p in plans)
        short = [(e, k) for e in EMOTIONS for k in range(1, NUM_FOLDS + 1) if held[e, k] < self.min_test_clips]
        if short:
            raise DemoDataError(f"min_test_clips={self.min_test_clips}: fold test splits "
                                f"{', '.join(f'{k} ({e})' for e, k in short[:4])} would hold fewer; use a multiple "
                                f"of {NUM_FOLDS} identities")

    def marker(self) -> dict:
        fields = asdict(self)
        if not self.min_test_clips:  # datasets written before the floor existed keep their marker
            fields.pop("min_test_clips")
        return {"dataset": "argen-ray demo", "version": DEMO_VERSION, **fields}


def _openface_csv(clip: Clip) -> str:
    header = (["frame", "face_id", "timestamp", "confidence", "success"]
              + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
              + [f"AU{au:02d}_r" for au in OPENFACE_AUS] + [f"AU{au:02d}_c" for au in PRESENCE_AUS])
    columns = {au: MODELLED_AUS.index(au) for au in OPENFACE_AUS}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for f, points in enumerate(clip.landmarks):
        au = clip.aus.intensities[f]
        presence = [int(au[columns[a]] >= PRESENCE_THRESHOLD) if a in columns else 0 for a in PRESENCE_AUS]
        writer.writerow([f + 1, 0, f"{f / FPS:.3f}", "1.00", 1]
                        + [f"{v:.3f}" for v in points[:, 0]] + [f"{v:.3f}" for v in points[:, 1]]
                        + [f"{au[columns[a]]:.2f}" for a in OPENFACE_AUS] + presence)
    return buf.getvalue()


def _write_clip(root: Path, clip: Clip) -> None:
    """Frames first, the OpenFace CSV last: its presence marks the clip complete."""
    name = clip.plan.video_name
    folder = root / FRAMES_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    for f, image in enumerate(clip.frames):
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise DemoDataError(f"JPEG encoding failed for clip {name} frame {f + 1}")
        (folder / f"{name}_{f + 1:05d}.jpg").write_bytes(jpeg.tobytes())
    atomic_write_text(root / OPENFACE_DIR / f"{name}.csv", _openface_csv(clip))


def _render_and_write(job: tuple[Path, DemoParams, ClipPlan]) -> str:
    """Worker task: synthesise one clip and write it."""
    root, params, plan = job
    cv2.setNumThreads(1)
    identity = make_identity(params.seed, plan.identity)  # one identity, not all of them, per clip
    _write_clip(root, synthesize_clip(plan, identity, params.seed, params.frames, params.size))
    return plan.video_name


def _annotation(plan: ClipPlan, params: DemoParams) -> dict:
    aus = clip_timeline(plan, params.seed, params.frames)
    return {"video_name": plan.video_name, "label": plan.label, "emotion": plan.emotion, "subject": plan.subject,
            "fold": plan.fold, "prototype_aus": "+".join(str(a) for a in aus.variant),
            # Neutral clips have no onset or apex.
            "onset_frame": aus.onset + 1 if aus.variant else "", "apex_frame": aus.apex + 1 if aus.variant else "",
            "apex_intensity": f"{aus.intensities[aus.apex:].max():.2f}"}


def _csv_text(header: list[str], rows: Iterable[Iterable]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _write_index(root: Path, params: DemoParams, plans: list[ClipPlan], annotations: list[dict]) -> None:
    for k in range(1, NUM_FOLDS + 1):
        for split, members in (("train", [p for p in plans if p.fold != k]), ("test", [p for p in plans if p.fold == k])):
            atomic_write_text(root / SPLIT_DIR / f"{split}(single-labeled)" / f"set_{k}.csv",
                              _csv_text(["video_name", "label"], [(p.video_name, p.label) for p in members]))
    atomic_write_text(root / "subjects.csv", _csv_text(["video_name", "subject"], [(p.video_name, p.subject) for p in plans]))
    annotations = sorted(annotations, key=lambda a: a["video_name"])
    atomic_write_text(root / "annotations.csv", _csv_text(list(annotations[0]), [a.values() for a in annotations]))
    counts = {e: sum(p.emotion == e for p in plans) for e in EMOTIONS}
    atomic_write_text(root / "README.txt", _readme(params, counts))
    atomic_write_bytes(root / "preview.jpg", _preview(root, params, annotations))


def _readme(params: DemoParams, counts: dict[str, int]) -> str:
    shares = ", ".join(f"{e} {n}" for e, n in counts.items())
    floor = f" \\\n    --min-test-clips {params.min_test_clips}" if params.min_test_clips else ""
    return f"""argen-ray demo dataset (version {DEMO_VERSION})

A small synthetic, long-tailed 7-class dynamic facial expression dataset in DFEW's layout,
written by `argen-ray demo-data OUT --seed {params.seed} --identities {params.num_identities} \\
    --clips-per-identity {params.clips_per_identity} --frames {params.frames} --size {params.size}{floor}`.
Same parameters, same bytes.

Faces are procedural renderings of {params.num_identities} synthetic identities drawn from 68 iBUG
landmarks. Each clip starts neutral and, from a random onset, unfolds to a random apex of its
emotion's FACS AU prototype (happy 6+12(+25), sad 1+4+15(+17), angry 4+5+7+23, surprise
1+2+5+26+25, disgust 9+15+16 / 9+17 / 10+17, fear 1+2+4+5+7+20+26+25; neutral clips only jitter),
with a small head sway and per-frame noise. Clips per class: {shares}.

Files
- EmoLabel_DataSplit/{{train,test}}(single-labeled)/set_1..5.csv: video_name,label; labels are
  1-based (1 happy, 2 sad, 3 neutral, 4 angry, 5 surprise, 6 disgust, 7 fear). Folds are split
  by identity: every identity's clips are in exactly one test set.
- Clip/clip_224x224/<id>/<id>_<frame>.jpg: {params.frames} frames of {params.size}x{params.size} px
  (the folder keeps DFEW's name).
- OpenFace/<id>.csv: OpenFace 2.x columns (comma-separated, no spaces): frame, face_id, timestamp,
  confidence, success, x_0..x_67, y_0..y_67 (pixels, iBUG order), AUxx_r intensities (0-5) and
  AUxx_c presence (intensity >= {PRESENCE_THRESHOLD}). These are the ground truth the frames were drawn
  from, not estimates. AU16 (in a disgust prototype) shapes the face but has no OpenFace column.
- subjects.csv: video_name,subject. annotations.csv: emotion, prototype AUs, onset and apex frame
  (1-based), apex intensity. preview.jpg: first and apex frames per class.
"""


def _preview(root: Path, params: DemoParams, annotations: list[dict]) -> bytes:
    """A contact sheet: one row per emotion, (first, apex) frame pairs of up to 4 clips."""
    s, cols = params.size, 4
    sheet = np.full((len(EMOTIONS) * s, 2 * cols * s, 3), 255, np.uint8)
    for r, emotion in enumerate(EMOTIONS):
        rows = [a for a in annotations if a["emotion"] == emotion][:cols]
        for c, a in enumerate(rows):
            for k, frame in enumerate((1, a["apex_frame"] or params.frames)):
                path = root / FRAMES_DIR / a["video_name"] / f"{a['video_name']}_{frame:05d}.jpg"
                sheet[r * s:(r + 1) * s, (2 * c + k) * s:(2 * c + k + 1) * s] = cv2.imread(str(path))
        cv2.putText(sheet, emotion, (3, r * s + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    ok, jpeg = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return jpeg.tobytes()


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _check_target(out: Path, params: DemoParams) -> bool:
    """True when OUT already holds this exact dataset; raises when OUT must not be replaced."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DemoDataError(f"{out} exists and is not a directory; refusing to replace it with the demo dataset")
    marker = _read_marker(out)
    if marker is None:
        if any(out.iterdir()):
            raise DemoDataError(f"{out} is a non-empty directory without a demo-dataset marker ({MARKER}); "
                                f"refusing to overwrite it: choose another OUT")
        return False
    wanted = params.marker()
    if marker != wanted:
        diff = ", ".join(f"{k} {marker.get(k)!r} there, {v!r} asked" for k, v in wanted.items() if marker.get(k) != v)
        raise DemoDataError(f"{out} holds a demo dataset written with other parameters ({diff or 'unknown marker'}); "
                            f"delete it or choose another OUT")
    return True


def _partial_dir(out: Path, params: DemoParams) -> Path:
    """The hidden build folder beside OUT; a stale one with other parameters is cleared."""
    partial = out.parent / f".{out.name}.partial"
    if partial.exists() and _read_marker(partial) != {**params.marker(), "complete": False}:
        if _read_marker(partial) is None and partial.is_dir() and any(partial.iterdir()):
            raise DemoDataError(f"{partial} exists and is not an unfinished demo dataset; remove it and rerun")
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_json(partial / MARKER, {**params.marker(), "complete": False})
    return partial


def _run_jobs(jobs: list, workers: int) -> Iterator[str]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_render_and_write, jobs)
        return
    import multiprocessing

    # spawn: safe beside threads (Ray, OpenCV) in the parent; each task carries its own seeds.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_render_and_write, jobs, chunksize=2)


def write_demo_dataset(out: str | os.PathLike, seed: int = 0, num_identities: int = 12, clips_per_identity: int = 6,
                       frames: int = 16, size: int = 112, *, min_test_clips: int = 0, workers: int = 1,
                       progress: bool = False) -> Path:
    """Write the demo dataset to `out` (see the module doc) and return its path.

    Deterministic for the parameters (any `workers`). A complete dataset with the same parameters
    at `out` is returned as is; a killed run resumes. `min_test_clips` > 0 guarantees that many
    clips of every class in every fold's test split (the long tail is kept above that floor).
    """
    params = DemoParams(int(seed), int(num_identities), int(clips_per_identity), int(frames), int(size),
                        int(min_test_clips))
    params.check()
    out = Path(out).absolute()
    if _check_target(out, params):
        return out
    partial = _partial_dir(out, params)
    plans = plan_clips(params.seed, params.num_identities, params.clips_per_identity, params.min_test_clips)
    todo = [p for p in plans if not (partial / OPENFACE_DIR / f"{p.video_name}.csv").is_file()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plans), initial=len(plans) - len(todo), unit="clip", desc="demo-data")
    for _ in _run_jobs([(partial, params, p) for p in todo], workers):
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    annotations = [_annotation(p, params) for p in plans]
    _write_index(partial, params, plans, annotations)
    atomic_write_json(partial / MARKER, params.marker())
    if out.exists():
        out.rmdir()  # an empty directory (checked above)
    os.replace(partial, out)
    return out
