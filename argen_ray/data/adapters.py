"""Dataset adapters: each reads one dataset layout into `ClipRecord`s on the canonical labels.

An adapter is a function `(collector, root, **options)` registered in `ADAPTERS`. It walks
its layout's label files and hands every clip to the `ClipCollector`, which checks the clip's
frames, drops duplicates and records a `SkipReport` (file, line, reason) for everything left
out. Adapters only read: nothing is ever written inside a dataset root.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Callable, Iterator

from argen_ray.data.labels import EMOTIONS, LabelError, label_index
from argen_ray.data.records import ClipRecord, Dataset, DatasetError, SkipReport
from argen_ray.data.video import VIDEO_SUFFIXES, VideoReadError, probe_clip

# Each dataset's documented label codes -> canonical names (DESIGN 2).
DFEW_LABELS = {1: "happy", 2: "sad", 3: "neutral", 4: "angry", 5: "surprise", 6: "disgust", 7: "fear"}
FERV39K_LABELS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
                  "neutral": "neutral", "sad": "sad", "surprise": "surprise"}
CKPLUS_LABELS = {0: "neutral", 1: "angry", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy",
                 6: "sad", 7: "surprise"}
VERIFY_MODES = ("quick", "full")
# CK+ sequences run from a neutral face to the apex (Lucey et al. 2010): their first frames are
# the subject's neutral face, which ASI takes identity frames from (CK+ has no neutral class).
CKPLUS_NEUTRAL_ONSET = 3


class ClipCollector:
    """Builds a `Dataset`: checks each clip's frame source and records why items are skipped."""

    def __init__(self, kind: str, root: Path, verify: str = "quick"):
        from tqdm.auto import tqdm

        if verify not in VERIFY_MODES:
            raise DatasetError(f"option verify={verify!r} is not one of {', '.join(VERIFY_MODES)}")
        self.dataset = Dataset(kind=kind, root=root)
        self.full = verify == "full"
        self._seen: dict[str, str] = {}
        self._progress = tqdm(desc=f"reading {kind} clips", unit="clip", disable=None, leave=False)

    def __enter__(self) -> "ClipCollector":
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.close()

    def skip(self, path: Path, line: int | None, reason: str, detail: str = "") -> None:
        self.dataset.skipped.append(SkipReport(Path(path), line, reason, detail))

    def add(self, where: tuple[Path, int | None], clip_id: str, source: Path, label: int, *,
            num_frames: int | None = None, **fields) -> bool:
        """Check the clip and keep it; on a problem record a skip at `where` and return False."""
        self._progress.update(1)
        if clip_id in self._seen:
            self.skip(*where, "duplicate clip", f"{clip_id} already listed at {self._seen[clip_id]}")
            return False
        try:
            counted = probe_clip(source, full=self.full)
        except VideoReadError as exc:
            self.skip(*where, exc.reason, str(exc))
            return False
        self._seen[clip_id] = ":".join(str(w) for w in where if w is not None)
        # A count read from disk beats one from an annotation file.
        num_frames = counted if counted is not None else num_frames
        self.dataset.records.append(ClipRecord(clip_id, Path(source), label, num_frames=num_frames, **fields))
        return True

    def finish(self) -> Dataset:
        """The dataset; an error listing the skips when no clip is usable."""
        ds = self.dataset
        if not ds.records:
            shown = "\n  ".join(str(s) for s in ds.skipped[:10])
            more = f"\n  ... and {len(ds.skipped) - 10} more" if len(ds.skipped) > 10 else ""
            raise DatasetError(f"no usable clips in {ds.kind} dataset at {ds.root}"
                               + (f"; skipped {len(ds.skipped)}:\n  {shown}{more}" if ds.skipped else ""))
        return ds


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of a label file's non-blank, non-comment lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    for number, line in _text_lines(path):
        yield number, [cell.strip() for cell in next(csv.reader([line]))]


def _existing_lists(collector: ClipCollector, lists: dict[str, Path]) -> dict[str, Path]:
    """The split lists that exist; a missing one is reported, all missing is an error."""
    found = {split: p for split, p in lists.items() if p.is_file()}
    if not found:
        raise DatasetError(f"{collector.dataset.kind}: none of the split lists exist: "
                           + ", ".join(str(p) for p in lists.values()))
    for split, p in lists.items():
        if split not in found:
            collector.skip(p, None, "missing file", f"{split} split list not found; that split is empty")
    return found


def _resolve(root: Path, value: str | Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else root / p


# --- DFEW -------------------------------------------------------------------------------

# Frame layouts seen in DFEW copies: full clips, the official 16-frame variant, and the
# `clip_224x16f` name some copies use for it.
DFEW_FRAME_LAYOUTS = ("clip_224x224", "clip_224x224_16f", "clip_224x16f")
# Split-list folders: the official `train(single-labeled)` and the plain `train` of some copies.
DFEW_LABEL_LAYOUTS = {"single-labeled": "{split}(single-labeled)", "plain": "{split}"}


def load_dfew(collector: ClipCollector, root: Path, *, fold: int = 1, source: str = "auto",
              labels: str = "auto") -> None:
    """DFEW: `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<fold>.csv` (video_name,label
    with labels 1 happy ... 7 fear); frames in `Clip/clip_224x224/<5-digit id>/` or videos in
    `Clip/original/`. Optional extras (the demo dataset writes them): `subjects.csv`
    (video_name,subject) and `OpenFace/<id>.csv` per-frame AU intensities.

    `source`: one of DFEW_FRAME_LAYOUTS, "original", or "auto": the first of those folders that
    exists under `Clip/`, for the WHOLE dataset (a clip missing from it is reported missing, never
    taken from another layout: 16-frame and full clips must not mix). `labels`: "single-labeled"
    (`EmoLabel_DataSplit/train(single-labeled)/`), "plain" (`EmoLabel_DataSplit/train/`) or
    "auto" (the first that holds the fold's lists).
    """
    if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= 5:
        raise DatasetError(f"dfew: fold must be 1..5 (DFEW's 5-fold protocol), got {fold!r}")
    choices = ("auto", "original") + DFEW_FRAME_LAYOUTS
    if source not in choices:
        raise DatasetError(f"dfew: source={source!r} is not one of {', '.join(choices)}")
    if labels not in ("auto", *DFEW_LABEL_LAYOUTS):
        raise DatasetError(f"dfew: labels={labels!r} is not one of auto, {', '.join(DFEW_LABEL_LAYOUTS)}")
    if source == "auto":
        source = next((name for name in DFEW_FRAME_LAYOUTS + ("original",) if (root / "Clip" / name).is_dir()),
                      DFEW_FRAME_LAYOUTS[0])
    split_dir = root / "EmoLabel_DataSplit"
    layouts = list(DFEW_LABEL_LAYOUTS) if labels == "auto" else [labels]
    candidates = [{split: split_dir / DFEW_LABEL_LAYOUTS[name].format(split=split) / f"set_{fold}.csv"
                   for split in ("train", "test")} for name in layouts]
    chosen = next((c for c in candidates if any(p.is_file() for p in c.values())), candidates[0])
    lists = _existing_lists(collector, chosen)
    videos = _video_index(root / "Clip" / "original") if source == "original" else {}
    subjects = _dfew_subjects(collector, root / "subjects.csv")
    openface = root / "OpenFace"
    au_files = {p.stem: p for p in openface.glob("*.csv")} if openface.is_dir() else {}
    for split, list_path in lists.items():
        for number, row in _csv_rows(list_path):
            where = (list_path, number)
            if len(row) < 2 or not row[0]:
                collector.skip(*where, "malformed row", f"expected video_name,label, got {row}")
                continue
            name, code = row[0], row[1]
            if not name.isdigit():
                if number == 1 and code.lower() == "label":
                    continue  # header
                collector.skip(*where, "malformed row", f"video_name {name!r} is not a clip number")
                continue
            if not code.isdigit() or int(code) not in DFEW_LABELS:
                collector.skip(*where, "unknown label", f"DFEW label {code!r} is not one of 1..7")
                continue
            clip_id = f"{int(name):05d}"
            frames = _dfew_source(root, clip_id, source, videos)
            collector.add(where, clip_id, frames, EMOTIONS.index(DFEW_LABELS[int(code)]),
                          subject=subjects.get(clip_id), split=split, fold=fold,
                          au_csv=au_files.get(clip_id))


def _video_index(directory: Path) -> dict[int, Path]:
    """Clip number -> video file of a directory of videos named by number (padded or not)."""
    if not directory.is_dir():
        return {}
    return {int(p.stem): p for p in directory.iterdir()
            if p.stem.isdigit() and p.suffix.lower() in VIDEO_SUFFIXES}


def _dfew_source(root: Path, clip_id: str, source: str, videos: dict[int, Path]) -> Path:
    """The clip's frames in the one chosen layout (or its video); a missing one is named there."""
    if source == "original":
        return videos.get(int(clip_id), root / "Clip" / "original" / clip_id)
    return root / "Clip" / source / clip_id


def _dfew_subjects(collector: ClipCollector, path: Path) -> dict[str, str]:
    subjects: dict[str, str] = {}
    if not path.is_file():
        return subjects
    for number, row in _csv_rows(path):
        if len(row) >= 2 and row[0].isdigit() and row[1]:
            subjects[f"{int(row[0]):05d}"] = row[1]
        elif not (number == 1 and row[:2] == ["video_name", "subject"]):
            collector.skip(path, number, "malformed row", f"expected video_name,subject, got {row}")
    return subjects


# --- FERV39k ----------------------------------------------------------------------------

def load_ferv39k(collector: ClipCollector, root: Path, *,
                 train_list: str = "4_setups/All_scenes/train_All.csv",
                 test_list: str = "4_setups/All_scenes/test_All.csv",
                 frames_dir: str = "2_ClipsforFaceCrop") -> None:
    """FERV39k: official split lists, one `<Scene>/<Emotion>/<clip> <Emotion>` per line
    (space- or comma-separated), frames in `<frames_dir>/<Scene>/<Emotion>/<clip>/`."""
    lists = _existing_lists(collector, {"train": _resolve(root, train_list), "test": _resolve(root, test_list)})
    frames_root = _resolve(root, frames_dir)
    for split, list_path in lists.items():
        for number, line in _text_lines(list_path):
            where = (list_path, number)
            fields = re.split(r"[,\s]+", line)
            if len(fields) != 2:
                collector.skip(*where, "malformed row", f"expected '<clip path> <Emotion>', got {line!r}")
                continue
            rel, name = fields
            if name.lower() not in FERV39K_LABELS:
                collector.skip(*where, "unknown label", f"{name!r} is not a FERV39k class "
                               f"({', '.join(k.capitalize() for k in FERV39K_LABELS)})")
                continue
            label = EMOTIONS.index(FERV39K_LABELS[name.lower()])
            collector.add(where, rel.strip("/"), frames_root / rel, label, split=split)


# --- CK+ --------------------------------------------------------------------------------

def load_ckplus(collector: ClipCollector, root: Path, *, split: str = "test",
                contempt_as: str | None = None) -> None:
    """CK+: `cohn-kanade-images/Sxxx/nnn/*.png`, labels in `Emotion/Sxxx/nnn/*_emotion.txt`
    (0 neutral 1 anger 2 contempt 3 disgust 4 fear 5 happy 6 sadness 7 surprise).

    Only 327 of 593 sequences carry a label; the others are reported, never guessed. Contempt
    has no canonical class: skipped unless `contempt_as` names one. Every record gets `split`
    ("test": CK+ is the zero-shot evaluation set).
    """
    contempt = None if contempt_as is None else label_index(contempt_as)
    images, emotion = root / "cohn-kanade-images", root / "Emotion"
    if not images.is_dir():
        raise DatasetError(f"ckplus: {images} does not exist (expected cohn-kanade-images/Sxxx/nnn/*.png)")
    for subject_dir in _subdirs(images):
        for seq_dir in _subdirs(subject_dir):
            subject, seq = subject_dir.name, seq_dir.name
            label_dir = emotion / subject / seq
            label_files = sorted(label_dir.glob("*_emotion.txt")) if label_dir.is_dir() else []
            if not label_files:
                collector.skip(seq_dir, None, "no label file", f"no {label_dir}/*_emotion.txt")
                continue
            code = _ckplus_code(label_files[0])
            if code is None or code not in CKPLUS_LABELS:
                collector.skip(label_files[0], 1, "unknown label", "expected one number 0..7 "
                               "(0 neutral 1 anger 2 contempt 3 disgust 4 fear 5 happy 6 sadness 7 surprise)")
                continue
            if CKPLUS_LABELS[code] == "contempt" and contempt is None:
                collector.skip(label_files[0], 1, "excluded class", "contempt has no canonical class "
                               "(set option contempt_as to map it)")
                continue
            label = contempt if CKPLUS_LABELS[code] == "contempt" else EMOTIONS.index(CKPLUS_LABELS[code])
            collector.add((label_files[0], 1), f"{subject}_{seq}", seq_dir, label, subject=subject, split=split,
                          neutral_onset=CKPLUS_NEUTRAL_ONSET)


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _ckplus_code(path: Path) -> int | None:
    """The label code of a CK+ emotion file ("   3.0000000e+00"), or None when malformed."""
    lines = [text for _, text in _text_lines(path)]
    try:
        value = float(lines[0]) if len(lines) == 1 else None
    except ValueError:
        return None
    return int(value) if value is not None and value.is_integer() else None


# --- DFER-CLIP annotation lists ---------------------------------------------------------

def load_dferclip(collector: ClipCollector, root: Path, *, train_list: str | None = None,
                  test_list: str | None = None) -> None:
    """DFER-CLIP annotation files: `frame_dir num_frames label` per line, labels 0-based on the
    canonical order. Frame directories are taken as given when they exist; relative ones are
    joined to `root`; absolute paths from another machine are rebased onto `root` by keeping
    the shortest tail of path components that exists there (found once per list)."""
    given = {split: p for split, p in (("train", train_list), ("test", test_list)) if p}
    if not given:
        raise DatasetError("dferclip: give the annotation file(s) as options train_list and/or test_list")
    lists = _existing_lists(collector, {s: _resolve(root, p) for s, p in given.items()})
    for split, list_path in lists.items():
        keep: int | None = None  # path components kept when rebasing onto root
        for number, line in _text_lines(list_path):
            where = (list_path, number)
            fields = line.rsplit(maxsplit=2)
            if len(fields) != 3 or not fields[1].isdigit():
                collector.skip(*where, "malformed row", f"expected 'frame_dir num_frames label', got {line!r}")
                continue
            raw, count, code = fields
            if not code.lstrip("-").isdigit() or not 0 <= int(code) < len(EMOTIONS):
                collector.skip(*where, "unknown label", f"label {code!r} is not a canonical class 0..6")
                continue
            if keep is None:
                keep = _rebase_depth(root, raw)
            frames = _rebased(root, raw, keep)
            clip_id = frames.relative_to(root).as_posix() if frames.is_relative_to(root) else raw
            collector.add(where, clip_id, frames, int(code), split=split, num_frames=int(count))


def _rebase_depth(root: Path, raw: str) -> int | None:
    p = Path(raw)
    if not p.is_absolute() or p.exists():
        return 0
    parts = p.parts[1:]
    for k in range(1, len(parts) + 1):
        if (root.joinpath(*parts[-k:])).exists():
            return k
    return None  # undecided: try again on the next line


def _rebased(root: Path, raw: str, keep: int | None) -> Path:
    p = Path(raw)
    if not p.is_absolute():
        return root / p
    if not keep:
        return p
    return root.joinpath(*p.parts[-keep:])


# --- manifest CSV -----------------------------------------------------------------------

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("path", "label", "subject", "split", "fold", "au_csv", "clip_id")


def load_manifest(collector: ClipCollector, root: Path) -> None:
    """A CSV with a header naming `path,label` and optionally `subject,split,fold,au_csv,clip_id`
    (root is the CSV, or a directory holding manifest.csv). Labels are canonical names
    (aliases allowed) or ints 0..6; relative paths are relative to the CSV's directory."""
    csv_path = root / MANIFEST_NAME if root.is_dir() else root
    if not csv_path.is_file():
        raise DatasetError(f"manifest: {csv_path} does not exist")
    base = csv_path.parent
    rows = _csv_rows(csv_path)
    header_line, header = next(rows, (None, []))
    columns = [c.lower() for c in header]
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise DatasetError(f"{csv_path}:{header_line or 1}: header must name columns path,label "
                           f"(optional {', '.join(MANIFEST_COLUMNS[2:])}); missing {', '.join(missing)}")
    for number, row in rows:
        where = (csv_path, number)
        if len(row) != len(columns):
            collector.skip(*where, "malformed row", f"{len(row)} fields for {len(columns)} columns")
            continue
        cell = dict(zip(columns, row))
        if not cell["path"]:
            collector.skip(*where, "malformed row", "empty path")
            continue
        try:
            label = label_index(cell["label"])
        except LabelError as exc:
            collector.skip(*where, "unknown label", str(exc))
            continue
        fold = cell.get("fold") or None
        if fold is not None and not fold.isdigit():
            collector.skip(*where, "malformed row", f"fold {fold!r} is not an int")
            continue
        collector.add(where, cell.get("clip_id") or cell["path"], _resolve(base, cell["path"]), label,
                      subject=cell.get("subject") or None, split=cell.get("split") or "train",
                      fold=int(fold) if fold else None,
                      au_csv=_resolve(base, cell["au_csv"]) if cell.get("au_csv") else None)


# kind -> adapter; `load_dataset` checks options against each adapter's keyword arguments.
ADAPTERS: dict[str, Callable[..., None]] = {
    "dfew": load_dfew,
    "ferv39k": load_ferv39k,
    "ckplus": load_ckplus,
    "dferclip": load_dferclip,
    "manifest": load_manifest,
}
