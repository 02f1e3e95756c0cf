"""The "ti2v" generator backend and the tiny model folder it loads for the local preset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from argen_ray.ard.generator import GenerationRequest, GenerationResult, build_generator
from argen_ray.ard.guidance import guidance_curve
from argen_ray.ard.ti2v import TI2VInputError, TI2VModelError
from argen_ray.ard.tiny_models import TINY_MODEL_NAME, tiny_t2v_path
from argen_ray.config import load_config


@pytest.fixture(scope="module")
def backend():
    before = torch.get_num_threads()
    cfg = load_config(None, ["generator.backend=ti2v", "generator.model=tiny", "generator.num_frames=4",
                             "generator.window=3", "generator.height=32", "generator.width=32"])
    yield build_generator(cfg.generator)
    torch.set_num_threads(before)  # the backend sized torch's threads to generator.num_cpus


def _face(seed=0, shape=(48, 40, 3)):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def test_tiny_model_folder_has_the_modelscope_layout_and_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ARGEN_RAY_CACHE", str(tmp_path))
    folder = tiny_t2v_path()
    assert folder == tmp_path / TINY_MODEL_NAME
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / part).is_dir()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"] and index["scheduler"][1] == "DDIMScheduler"
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert tiny_t2v_path() == folder and (folder / "model_index.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [TINY_MODEL_NAME]  # no temporary folder left


def test_backend_returns_videos_that_start_at_the_reference(backend):
    requests = [GenerationRequest(image=_face(0), prompt="a surprised face", steps=2,
                                  guidance=guidance_curve(3, 3.0, 1.0, 6.0, 12.0), seed=1, request_id="r0"),
                GenerationRequest(image=_face(1, (30, 60, 3)), prompt="a fearful face", steps=3, guidance=9.0,
                                  seed=2, request_id="r1", num_frames=3)]
    results = backend.generate(requests)
    assert all(isinstance(r, GenerationResult) for r in results)
    assert [r.request_id for r in results] == ["r0", "r1"]
    assert results[0].frames.shape == (4, 32, 32, 3) and results[1].frames.shape == (3, 32, 32, 3)
    assert results[0].frames.dtype == np.uint8
    assert [r.nfe for r in results] == [3 * 2 * 2, 2 * 3 * 2]   # windows * T * 2 (CFG)
    assert results[0].model_id == TINY_MODEL_NAME
    assert {"encode_s", "denoise_s", "decode_s", "total_s"} <= set(results[0].timings)
    # Seeded per request: the same request alone gives the same video.
    [alone] = backend.generate(requests[:1])
    assert np.abs(alone.frames.astype(int) - results[0].frames).max() <= 1


def test_encode_state_is_the_generators_own_text_and_image_encoding(backend):
    prompts = ["a surprised face, the brows rise", "a disgusted face, the nose wrinkles"]
    text, image = backend.encode_state(prompts, [_face(0), _face(1)])
    assert text.shape == (2, 32) and image.shape == (2, 4 * 8 * 8)
    assert text.dtype == image.dtype == np.float32
    assert not np.allclose(text[0], text[1]) and not np.allclose(image[0], image[1])
    again_text, again_image = backend.encode_state(prompts[:1], [_face(0)])
    np.testing.assert_allclose(again_text[0], text[0], atol=1e-6)
    np.testing.assert_allclose(again_image[0], image[0], atol=1e-5)


def test_bad_request_is_named_by_its_id(backend):
    good = GenerationRequest(image=_face(), prompt="a face", steps=2, guidance=9.0, request_id="ok")
    bad = GenerationRequest(image=_face(), prompt="a face", steps=0, guidance=9.0, request_id="p7#3")
    with pytest.raises(TI2VInputError, match=r"generation request p7#3: num_inference_steps"):
        backend.generate([good, bad])
    with pytest.raises(TI2VInputError, match="one image per prompt"):
        backend.encode_state(["a", "b"], [_face()])


def test_missing_model_folder_is_a_clear_error(tmp_path):
    cfg = load_config(None, ["generator.backend=ti2v", f"generator.model={tmp_path / 'nope'}"])
    with pytest.raises(TI2VModelError, match="does not exist"):
        build_generator(cfg.generator)
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = load_config(None, ["generator.backend=ti2v", f"generator.model={empty}"])
    with pytest.raises(TI2VModelError, match="cannot load a ModelScope text-to-video model"):
        build_generator(cfg.generator)


def test_a_request_carries_its_own_resample_count_beside_the_configured_one(backend):
    # TI2V-Zero's baseline at r = 4 is scored beside policy candidates at the configured r (0 here):
    # each request's NFE is windows * (T + r (T - 1)) * 2, and the request at the configured r gives
    # the video it gives alone.
    plain = GenerationRequest(image=_face(0), prompt="a surprised face", steps=3, guidance=9.0, seed=1)
    resampled = GenerationRequest(image=_face(0), prompt="a surprised face", steps=3, guidance=9.0, seed=1,
                                  resample=2)
    both = backend.generate([plain, resampled])
    assert [r.nfe for r in both] == [3 * 3 * 2, 3 * (3 + 2 * 2) * 2]   # 3 windows (N = 3, K = 2)
    [alone] = backend.generate([plain])
    assert np.abs(alone.frames.astype(int) - both[0].frames).max() <= 1
    assert np.abs(both[1].frames.astype(int) - both[0].frames).max() > 1   # the passes change the clip
    with pytest.raises(TI2VInputError, match="resample_steps must be an integer >= 0"):
        backend.generate([GenerationRequest(image=_face(0), prompt="a face", steps=2, guidance=9.0, resample=-1)])
