"""Expression appearance learned from training clips and put on warped faces (argen_ray/ard/warp_appearance.py).

The 'real' clips here come from the demo renderer, which draws forehead lines over raised brows:
the learned model must carry that from the training clips onto a new face the warp alone leaves
smooth. The renderer is only the oracle of this test; the model sees nothing but pixels and landmarks.
"""
import numpy as np
import pytest

from argen_ray.ard.warp import FaceWarper
from argen_ray.ard.warp_appearance import (AppearanceError, AppearanceTransfer, Canvas, apex_pair, learn_appearance,
                                           measure_dataset_appearance, read_appearance, write_appearance)
from argen_ray.data.demo.au_model import au_to_landmarks, from_face_frame, to_face_frame
from argen_ray.data.demo.clips import make_identities
from argen_ray.data.demo.render import render_face

SIZE = 112
SURPRISE = {1: 4.5, 2: 4.5, 5: 3.0}   # brows up: the renderer draws forehead lines
FOREHEAD = (slice(None), (-0.85, -0.45))  # face-frame y band above the brows


def _neutral(identity):
    return from_face_frame(identity.neutral, np.array([56.0, 46.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), 30.0)


def _clip(identity, aus=SURPRISE, seed=0):
    """(frames, landmarks) of a 3-frame clip: neutral, half, apex (rendered with sensor noise)."""
    l0 = _neutral(identity)
    points = [l0, au_to_landmarks(l0, {a: v / 2 for a, v in aus.items()}), au_to_landmarks(l0, aus)]
    frames = [render_face(p, identity, SIZE, noise_seed=seed * 10 + i) for i, p in enumerate(points)]
    return np.stack(frames), np.stack(points)


def _band_mask(landmarks):
    """Pixels of the forehead band (face-frame y in FOREHEAD, |x| < 0.6)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    origin = (landmarks[36] + landmarks[39] + landmarks[42] + landmarks[45]) / 4
    iod = np.hypot(*((landmarks[42] + landmarks[45] - landmarks[36] - landmarks[39]) / 2))
    fx, fy = (xs - origin[0]) / iod, (ys - origin[1]) / iod
    lo, hi = FOREHEAD[1]
    return (np.abs(fx) < 0.6) & (fy > lo) & (fy < hi)


@pytest.fixture(scope="module")
def identities():
    return make_identities(3, 9)


@pytest.fixture(scope="module")
def model(identities):
    return learn_appearance([("surprise", apex_pair(*_clip(who, seed=i))) for i, who in enumerate(identities[:7])], 30)


def test_learned_appearance_brings_the_warp_closer_to_real_apex_frames(model, identities):
    transfer = AppearanceTransfer(model)
    for who in identities[7:]:            # faces the model never saw
        frames, points = _clip(who, seed=99)
        warped = FaceWarper(frames[0], points[0]).render(points[2])
        with_appearance = transfer.apply(warped, "surprise", points[0], points[2])
        band = _band_mask(points[2])
        real = frames[2].astype(float)
        before = np.abs(warped.astype(float) - real)[band].mean()
        after = np.abs(with_appearance.astype(float) - real)[band].mean()
        assert after < 0.75 * before, (before, after)
        # The forehead darkens (lines appear), as in the real apex frames.
        assert with_appearance[band].mean() < warped[band].mean() - 1.0


def test_zero_at_the_neutral_face_and_growing_with_intensity(model, identities):
    transfer = AppearanceTransfer(model)
    frames, points = _clip(identities[8])
    assert np.array_equal(transfer.apply(frames[0], "surprise", points[0], points[0]), frames[0])
    full = transfer.ratio("surprise", points[0], points[2], (SIZE, SIZE))
    half = transfer.ratio("surprise", points[0], points[1], (SIZE, SIZE))
    band = _band_mask(points[0])
    assert np.abs(full[band]).mean() > 0.02
    # Linear in the displacement: half the AU intensities, about half the log ratio.
    assert np.abs(half[band]).mean() == pytest.approx(0.5 * np.abs(full[band]).mean(), rel=0.25)
    # Classes the model has no clips of are left as the warp made them.
    assert np.array_equal(transfer.apply(frames[2], "disgust", points[0], points[2]), frames[2])


def test_only_training_clips_are_read(tmp_path, identities):
    import cv2

    from argen_ray.data.records import ClipRecord, Dataset

    def write(name, frames):
        folder = tmp_path / name
        folder.mkdir()
        for i, f in enumerate(frames):
            cv2.imwrite(str(folder / f"{i:05d}.png"), f[..., ::-1])
        return folder

    landmarks, records = {}, []
    for i, who in enumerate(identities[:4]):
        frames, points = _clip(who, seed=i)
        split = "train" if i < 3 else "test"
        if split == "test":
            frames = frames.copy()
            frames[2] //= 3            # a test clip whose apex looks nothing like the others
        records.append(ClipRecord(clip_id=f"c{i}", source=write(f"c{i}", frames), label=4, split=split))
        landmarks[f"c{i}"] = points
    seen = []

    def landmarks_of(record, frames):
        seen.append(record.clip_id)
        return landmarks[record.clip_id]

    dataset = Dataset(kind="demo", root=tmp_path, records=records)
    learned = measure_dataset_appearance(dataset, landmarks_of=landmarks_of)
    assert seen == ["c0", "c1", "c2"]
    assert learned["classes"]["surprise"]["clips"] == 3
    # Replacing the test clip changes nothing; a training clip's apex does change the model.
    records[3] = ClipRecord(clip_id="c3", source=write("c3b", _clip(identities[3], seed=3)[0]), label=4, split="test")
    again = measure_dataset_appearance(dataset, landmarks_of=landmarks_of)
    assert np.array_equal(again["classes"]["surprise"]["unit"], learned["classes"]["surprise"]["unit"])
    records[0] = ClipRecord(clip_id="c0", source=records[3].source, label=4, split="train")
    landmarks["c0"] = landmarks["c3"]
    changed = measure_dataset_appearance(dataset, landmarks_of=landmarks_of)
    assert not np.array_equal(changed["classes"]["surprise"]["unit"], learned["classes"]["surprise"]["unit"])


def test_model_file_round_trip_and_bad_file(model, tmp_path):
    path = write_appearance(model, tmp_path / "appearance.npz")
    back = read_appearance(path)
    assert back["pixels_per_iod"] == 30 and back["classes"]["surprise"]["clips"] == 7
    assert np.array_equal(back["classes"]["surprise"]["unit"], model["classes"]["surprise"]["unit"])
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(AppearanceError, match="bad.npz"):
        read_appearance(tmp_path / "bad.npz")


def test_canvas_maps_a_face_frame_onto_its_canvas_points(identities):
    canvas = Canvas(30)
    points = _neutral(identities[0])
    m = canvas.matrix(points)
    assert np.allclose(points @ m[:, :2].T + m[:, 2], canvas.points(to_face_frame(points)))


def test_the_warp_generator_puts_the_appearance_on_its_keyframes(model, tmp_path):
    from skimage import data

    from argen_ray.ard.generator import GenerationRequest, build_generator
    from argen_ray.config.generator import GeneratorConfig

    path = write_appearance(model, tmp_path / "appearance.npz")
    config = lambda **warp: GeneratorConfig(backend="warp", num_frames=4, warp={"max_side": 256, **warp})  # noqa: E731
    learned, bare = build_generator(config(appearance=path)), build_generator(config())
    ask = lambda w: [GenerationRequest(image=data.astronaut(), prompt="surprise", steps=3, guidance=w, seed=1,  # noqa: E731
                                       emotion="surprise")]
    full_learned, full_bare = learned.generate(ask(12.0))[0].frames, bare.generate(ask(12.0))[0].frames
    assert np.array_equal(full_learned[0], full_bare[0])              # the reference stays as it is
    assert np.abs(full_learned[-1].astype(int) - full_bare[-1]).mean() > 0.2
    # At w_min the schedule is neutral: nothing to add, the clips are the same.
    assert np.array_equal(learned.generate(ask(6.0))[0].frames, bare.generate(ask(6.0))[0].frames)
