"""The demo dataset: deterministic, DFEW-formatted, long-tailed, face-like, AU-true and learnable."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from argen_ray.data.demo import (AUModelError, DemoDataError, RenderError, au_to_landmarks, render_face,
                                 sample_identity, to_face_frame, write_demo_dataset)
from argen_ray.data.demo import writer as demo_writer
from argen_ray.data.labels import EMOTIONS
from argen_ray.data.video import read_image
from argen_ray.errors import ArgenError

FRAMES = 16
SIZE = 112
OPENFACE_R = ["AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU09_r", "AU10_r", "AU12_r", "AU14_r",
              "AU15_r", "AU17_r", "AU20_r", "AU23_r", "AU25_r", "AU26_r", "AU45_r"]
# FACS/EMFACS prototypes, written out independently of the generator's table (AU16 has no
# OpenFace column, so disgust's 9+15+16 shows as 9+15 here).
REQUIRED_AUS = {
    "happy": [{6, 12}], "sad": [{1, 4, 15}], "angry": [{4, 5, 7, 23}], "surprise": [{1, 2, 5, 26}],
    "fear": [{1, 2, 4, 5, 7, 20, 26}], "disgust": [{9, 15}, {9, 17}, {10, 17}],
}
SMALL = dict(num_identities=5, clips_per_identity=3, frames=5, size=48)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _points(row: dict) -> np.ndarray:
    return np.array([[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(68)])


def _iod(points: np.ndarray) -> float:
    return float(np.linalg.norm((points[42] + points[45]) / 2 - (points[36] + points[39]) / 2))


def _frame(root: Path, name: str, frame: int) -> np.ndarray:
    return read_image(root / "Clip" / "clip_224x224" / name / f"{name}_{frame:05d}.jpg")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The default-size dataset, written once for this module (two processes: 2 cores)."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", seed=0, workers=2)


@pytest.fixture(scope="module")
def annotations(demo) -> list[dict]:
    return _rows(demo / "annotations.csv")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("small") / "demo", seed=3, **SMALL)


# --- determinism, atomic writes, resume -------------------------------------------------

def test_same_seed_gives_the_same_bytes_whatever_the_worker_count(small, tmp_path):
    again = write_demo_dataset(tmp_path / "again", seed=3, workers=2, **SMALL)
    assert _files(again) == _files(small)
    other = write_demo_dataset(tmp_path / "other", seed=4, **SMALL)
    assert _files(other) != _files(small)


def test_rerun_is_a_no_op_and_foreign_or_mismatched_directories_are_refused(small, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    assert write_demo_dataset(small, seed=3, **SMALL) == small
    assert {p: p.stat().st_mtime_ns for p in small.rglob("*")} == before
    with pytest.raises(DemoDataError, match=r"other parameters \(seed 3 there, 4 asked\)"):
        write_demo_dataset(small, seed=4, **SMALL)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(DemoDataError, match="non-empty directory without a demo-dataset marker"):
        write_demo_dataset(foreign, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DemoDataError, match="not a directory"):
        write_demo_dataset(afile, **SMALL)
    assert list(tmp_path.glob(".*partial")) == []


def test_a_killed_run_leaves_no_output_and_the_rerun_resumes_to_the_same_bytes(small, tmp_path, monkeypatch):
    real = demo_writer._render_and_write
    done = []

    def dies_on_the_fourth_clip(job):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(job[2].video_name)
        return real(job)

    monkeypatch.setattr(demo_writer, "_render_and_write", dies_on_the_fourth_clip)
    out = tmp_path / "demo"
    with pytest.raises(KeyboardInterrupt):
        write_demo_dataset(out, seed=3, **SMALL)
    assert not out.exists()
    partial = tmp_path / ".demo.partial"
    assert sorted(p.stem for p in (partial / "OpenFace").glob("*.csv")) == done
    monkeypatch.setattr(demo_writer, "_render_and_write", lambda job: done.append(job[2].video_name) or real(job))
    write_demo_dataset(out, seed=3, **SMALL)
    assert len(done) == 5 * 3  # the three finished clips were not rendered again
    assert _files(out) == _files(small)
    assert not partial.exists()


def test_bad_parameters_are_plain_errors(tmp_path):
    for kwargs, message in (({"num_identities": 4}, "num_identities=4: need at least 5"),
                            ({"clips_per_identity": 1}, "clips_per_identity=1"),
                            ({"frames": 3}, "frames=3"), ({"size": 16}, "size=16"),
                            ({"num_identities": 5, "clips_per_identity": 2}, "cannot hold one neutral clip")):
        with pytest.raises(DemoDataError, match=message):
            write_demo_dataset(tmp_path / "x", **{**SMALL, **kwargs})
    assert not (tmp_path / "x").exists()


# --- layout ------------------------------------------------------------------------------

def test_layout_is_dfew_with_identity_disjoint_folds(demo, annotations):
    names = [a["video_name"] for a in annotations]
    assert len(names) == 12 * 6 and all(len(n) == 5 and n.isdigit() for n in names)
    subject = {r["video_name"]: r["subject"] for r in _rows(demo / "subjects.csv")}
    assert set(subject) == set(names)
    test_union = []
    for k in range(1, 6):
        split = demo / "EmoLabel_DataSplit"
        train = _rows(split / "train(single-labeled)" / f"set_{k}.csv")
        test = _rows(split / "test(single-labeled)" / f"set_{k}.csv")
        assert list(train[0]) == ["video_name", "label"]
        assert {int(r["label"]) for r in train + test} <= set(range(1, 8))
        assert sorted(r["video_name"] for r in train + test) == names
        assert not {subject[r["video_name"]] for r in train} & {subject[r["video_name"]] for r in test}
        test_union += [r["video_name"] for r in test]
    assert sorted(test_union) == names  # every clip is tested in exactly one fold
    label = {r["video_name"]: int(r["label"]) for r in train + test}
    for a in annotations:
        assert EMOTIONS[label[a["video_name"]] - 1] == a["emotion"]
        frames = sorted((demo / "Clip" / "clip_224x224" / a["video_name"]).iterdir())
        assert [f.name for f in frames] == [f"{a['video_name']}_{i:05d}.jpg" for i in range(1, FRAMES + 1)]
    assert _frame(demo, names[0], 1).shape == (SIZE, SIZE, 3)
    openface = _rows(demo / "OpenFace" / f"{names[0]}.csv")
    header = list(openface[0])
    assert header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert header[5:141] == [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    assert header[141:158] == OPENFACE_R
    assert header[158:] == [c.replace("_r", "_c") for c in OPENFACE_R[:-1]] + ["AU28_c", "AU45_c"]
    assert [int(r["frame"]) for r in openface] == list(range(1, FRAMES + 1))
    readme = (demo / "README.txt").read_text()
    assert "--seed 0" in readme and "version 1" in readme
    assert read_image(demo / "preview.jpg").shape == (7 * SIZE, 8 * SIZE, 3)


def test_class_shares_are_long_tailed_with_disgust_rarest(demo, annotations):
    counts = {e: sum(a["emotion"] == e for a in annotations) for e in EMOTIONS}
    assert counts["disgust"] >= 1 and counts["disgust"] < counts["fear"] <= counts["surprise"]
    assert counts["surprise"] < min(counts[e] for e in ("happy", "sad", "neutral", "angry"))
    subjects = {a["subject"] for a in annotations}
    assert len(subjects) >= 12
    assert all(any(a["subject"] == s and a["emotion"] == "neutral" for a in annotations) for s in subjects)
    for k in range(1, 6):  # rare classes are spread, so every fold trains on each class
        train = _rows(demo / "EmoLabel_DataSplit" / "train(single-labeled)" / f"set_{k}.csv")
        assert {int(r["label"]) for r in train} == set(range(1, 8))


def test_dfew_adapter_reads_the_dataset(demo, annotations):
    from argen_ray.data import load_dataset

    dataset = load_dataset("dfew", demo, fold=1)
    test = _rows(demo / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv")
    assert len(dataset) == len(annotations) and not dataset.skipped
    assert sorted(r.clip_id for r in dataset.split("test")) == sorted(r["video_name"] for r in test)
    by_name = {a["video_name"]: a for a in annotations}
    for r in dataset.records:
        assert r.emotion == by_name[r.clip_id]["emotion"] and r.subject == by_name[r.clip_id]["subject"]
        assert Path(r.au_csv).name == f"{r.clip_id}.csv"


# --- faces, AUs, landmarks, learnability --------------------------------------------------

def test_haar_finds_a_face_in_most_neutral_and_apex_frames(demo, annotations):
    from argen_ray.faces import haar_faces

    neutral = [len(haar_faces(_frame(demo, a["video_name"], 1))) > 0 for a in annotations]
    apex = [len(haar_faces(_frame(demo, a["video_name"], int(a["apex_frame"])))) > 0
            for a in annotations if a["emotion"] != "neutral"]
    assert np.mean(neutral) >= 0.8 and np.mean(apex) >= 0.8, (np.mean(neutral), np.mean(apex))


def test_prototype_aus_rise_from_onset_to_apex_and_others_stay_low(demo, annotations):
    for a in annotations:
        rows = _rows(demo / "OpenFace" / f"{a['video_name']}.csv")
        au = np.array([[float(r[c]) for c in OPENFACE_R] for r in rows])
        assert au.min() >= 0.0 and au.max() <= 5.0
        if a["emotion"] == "neutral":
            assert au.max() < 0.5, a
            continue
        onset, apex = int(a["onset_frame"]), int(a["apex_frame"])
        active = {int(c[2:4]) for c, v in zip(OPENFACE_R, au[apex - 1]) if v >= 1.0}
        required = next((r for r in REQUIRED_AUS[a["emotion"]] if r <= active), None)
        assert required is not None, (a, sorted(active))
        cols = [OPENFACE_R.index(f"AU{n:02d}_r") for n in required]
        before, peak = au[: onset - 1, cols], au[apex - 1:, cols]
        assert before.max() < 0.5 and peak.min() >= 1.0, a
        rise = au[onset - 1:apex, cols].mean(axis=1)
        assert np.all(np.diff(rise) > -0.2), (a, rise)  # rises (up to jitter), never falls back
        prototype = {int(n) for n in a["prototype_aus"].split("+")} | {25}  # 25 follows an open jaw
        others = [i for i, c in enumerate(OPENFACE_R) if int(c[2:4]) not in prototype]
        assert au[:, others].max() < 0.5, a


def test_csv_landmarks_are_the_rendered_geometry(demo, annotations):
    from argen_ray.faces import detect_landmarks

    errors, moved_to_apex, moved_to_first = [], [], []
    for a in annotations:
        if a["emotion"] == "neutral":
            continue
        rows = _rows(demo / "OpenFace" / f"{a['video_name']}.csv")
        first, apex = _points(rows[0]), _points(rows[int(a["apex_frame"]) - 1])
        found = detect_landmarks(_frame(demo, a["video_name"], int(a["apex_frame"])))
        assert found is not None, a
        iod = _iod(apex)
        errors.append(np.linalg.norm(found.points[17:] - apex[17:], axis=1).mean() / iod)
        if np.linalg.norm(apex[48:] - first[48:], axis=1).mean() / iod > 0.1:  # the mouth moved
            moved_to_apex.append(np.linalg.norm(found.points[48:] - apex[48:], axis=1).mean() / iod)
            moved_to_first.append(np.linalg.norm(found.points[48:] - first[48:], axis=1).mean() / iod)
    # dlib's 68 points lie on the CSV's (brows, eyes, nose, mouth; within a few % of the IOD) ...
    assert np.median(errors) < 0.08 and max(errors) < 0.15, (np.median(errors), max(errors))
    # ... and follow the expression: where the mouth moved, dlib sees it at its apex position.
    assert len(moved_to_apex) >= 5
    assert np.mean(moved_to_apex) < 0.6 * np.mean(moved_to_first), (np.mean(moved_to_apex), np.mean(moved_to_first))


def _nearest_centroid_accuracy(demo: Path, features: dict[str, np.ndarray]) -> float:
    """Mean held-out accuracy over the 5 identity-disjoint folds."""
    accuracies = []
    for k in range(1, 6):
        split = demo / "EmoLabel_DataSplit"
        train = _rows(split / "train(single-labeled)" / f"set_{k}.csv")
        test = _rows(split / "test(single-labeled)" / f"set_{k}.csv")
        x = np.stack([features[r["video_name"]] for r in train])
        y = np.array([int(r["label"]) for r in train])
        mu, sd = x.mean(0), x.std(0) + 1e-6
        classes = np.unique(y)
        centroids = np.stack([((x - mu) / sd)[y == c].mean(0) for c in classes])
        xt = (np.stack([features[r["video_name"]] for r in test]) - mu) / sd
        pred = classes[np.argmin(((xt[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
        accuracies.append(np.mean(pred == np.array([int(r["label"]) for r in test])))
    return float(np.mean(accuracies))


def test_a_tiny_classifier_learns_the_classes_on_held_out_identities(demo, annotations):
    import cv2
    from skimage.feature import hog

    motion, appearance = {}, {}
    for a in annotations:
        name = a["video_name"]
        rows = _rows(demo / "OpenFace" / f"{name}.csv")
        motion[name] = (to_face_frame(_points(rows[-1])) - to_face_frame(_points(rows[0]))).ravel()
        gray = cv2.resize(_frame(demo, name, FRAMES).mean(-1), (64, 64), interpolation=cv2.INTER_AREA)
        appearance[name] = hog(gray, orientations=8, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
    chance = 1 / 7
    assert _nearest_centroid_accuracy(demo, motion) >= 0.8  # landmark motion from the CSVs
    assert _nearest_centroid_accuracy(demo, appearance) >= 2.5 * chance  # pixels alone (last frame's HOG)


# --- the AU -> landmark model and the renderer ---------------------------------------------

def _neutral_pixels(seed: int = 0) -> np.ndarray:
    return np.array([56.0, 42.0]) + 30.0 * sample_identity(np.random.default_rng(seed), 0).neutral


def test_au_model_moves_the_right_landmarks_the_right_way():
    neutral = _neutral_pixels()
    iod = _iod(neutral)
    assert np.allclose(au_to_landmarks(neutral, {}), neutral)
    smile = au_to_landmarks(neutral, {"AU12": 4.0})
    assert smile[48, 1] < neutral[48, 1] - 0.05 * iod and smile[54, 1] < neutral[54, 1] - 0.05 * iod
    assert smile[54, 0] - smile[48, 0] > neutral[54, 0] - neutral[48, 0] + 0.1 * iod
    frown = au_to_landmarks(neutral, {15: 4.0})
    assert frown[48, 1] > neutral[48, 1] + 0.05 * iod
    surprise = au_to_landmarks(neutral, {"AU01_r": 4, "AU02": 4, 26: 4})
    assert (surprise[17:27, 1] < neutral[17:27, 1] - 0.03 * iod).all()
    assert surprise[8, 1] > neutral[8, 1] + 0.15 * iod and surprise[66, 1] - surprise[62, 1] > 0.15 * iod
    lowered = au_to_landmarks(neutral, {4: 5})
    assert lowered[22, 0] - lowered[21, 0] < neutral[22, 0] - neutral[21, 0]  # brows drawn together
    closed = au_to_landmarks(neutral, {45: 5, 7: 5})
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        assert closed[lower, 1] >= closed[upper, 1] - 1e-9  # shut, never inverted
    pressed = au_to_landmarks(neutral, {17: 5})
    for upper, lower in ((61, 67), (62, 66), (63, 65)):
        assert pressed[lower, 1] >= pressed[upper, 1] - 1e-9


def test_au_model_is_independent_of_position_scale_and_roll():
    neutral = _neutral_pixels()
    aus = {1: 2.0, 12: 3.5, 26: 1.5}
    angle = np.deg2rad(12.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def move(p):
        return (p - 50.0) @ rot.T * 1.7 + [200.0, 80.0]

    assert np.allclose(au_to_landmarks(move(neutral), aus), move(au_to_landmarks(neutral, aus)), atol=1e-9)


def test_au_model_and_renderer_reject_bad_input_plainly():
    neutral = _neutral_pixels()
    with pytest.raises(AUModelError, match="AU99 is not modelled"):
        au_to_landmarks(neutral, {99: 1.0})
    with pytest.raises(AUModelError, match="AU12 intensity 7.0 is outside"):
        au_to_landmarks(neutral, {"AU12": 7.0})
    with pytest.raises(AUModelError, match="AU12 is given twice"):
        au_to_landmarks(neutral, {12: 1.0, "AU12_r": 2.0})
    with pytest.raises(AUModelError, match="not an action unit name"):
        au_to_landmarks(neutral, {"smile": 1.0})
    with pytest.raises(AUModelError, match=r"shape \(5, 2\)"):
        au_to_landmarks(neutral[:5], {})
    who = sample_identity(np.random.default_rng(0), 0)
    with pytest.raises(RenderError, match="size must be an integer >= 32"):
        render_face(neutral, who, 16)
    with pytest.raises(RenderError, match="are they in pixels"):
        render_face(neutral * 100, who, 112)
    for cls in (AUModelError, RenderError, DemoDataError):
        assert issubclass(cls, ArgenError)


def test_render_face_is_deterministic_and_follows_the_landmarks():
    who = sample_identity(np.random.default_rng(1), 1)
    neutral = _neutral_pixels(1)
    img = render_face(neutral, who, SIZE, noise_seed=5)
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    assert np.array_equal(img, render_face(neutral, who, SIZE, noise_seed=5))
    # The dark iris sits between each eye's corners; the cheek below it is brighter.
    gray = img.mean(-1)
    for corners in ((36, 39), (42, 45)):
        x, y = np.round(neutral[list(corners)].mean(0)).astype(int)
        assert gray[y, x] < gray[y + 8, x] - 20
    opened = render_face(au_to_landmarks(neutral, {25: 5, 26: 5}), who, SIZE, noise_seed=5)
    x, y = np.round((au_to_landmarks(neutral, {25: 5, 26: 5})[[62, 66]]).mean(0)).astype(int)
    assert opened[y, x].mean() < img[y, x].mean() - 20  # the open mouth shows where its landmarks say


def test_cli_writes_the_dataset_and_reports_bad_input(tmp_path, capsys):
    from argen_ray.cli import main

    out = tmp_path / "cli"
    # The preset's floor of 5 test clips per class and fold cannot fit 15 clips: a plain error.
    assert main(["demo-data", str(out), "--seed", "3", "--identities", "5", "--clips-per-identity", "3",
                 "--frames", "5", "--size", "48"]) == 2
    assert "min_test_clips=5" in capsys.readouterr().err and not out.exists()
    assert main(["demo-data", str(out), "--seed", "3", "--identities", "5", "--clips-per-identity", "3",
                 "--frames", "5", "--size", "48", "--min-test-clips", "0"]) == 0
    assert (out / "demo_dataset.json").is_file() and "clips per class" in capsys.readouterr().out
    assert main(["demo-data", str(out), "--seed", "4", "--identities", "5", "--clips-per-identity", "3",
                 "--frames", "5", "--size", "48", "--min-test-clips", "0"]) == 2
    assert "other parameters (seed 3 there, 4 asked)" in capsys.readouterr().err


def test_sway_scale_zero_holds_the_head_at_the_clips_pose_and_one_is_the_dataset():
    """synthesize_clip(sway_scale=0): the head keeps the clip's pose over the clip (what the
    miniature's `head_sway: 0` training clips show), the same pose draw as the default; the default
    is the dataset's sway."""
    from argen_ray.data.demo.clips import ClipPlan, make_identities, synthesize_clip

    plan = ClipPlan(clip_id=5, identity=0, emotion="neutral", fold=0)
    person = make_identities(3, 1)[0]
    default, still, one = (synthesize_clip(plan, person, 3, 8, 48, *scale) for scale in ((), (0.0,), (1.0,)))
    assert np.array_equal(default.frames, one.frames)

    def pose_path(clip) -> float:  # how far the landmarks' centre and spread wander over the clip
        centre = clip.landmarks.mean(axis=1)
        spread = clip.landmarks.std(axis=1).mean(axis=1)
        return float(np.ptp(centre, axis=0).max() + np.ptp(spread))

    assert pose_path(default) > 0.3
    assert pose_path(still) < 0.25 * pose_path(default)
    # the clip's own pose (its offset from the frame centre) is kept, only the sway goes
    assert np.abs(still.landmarks[0].mean(axis=0) - default.landmarks.mean(axis=(0, 1))).max() < 1.5
