"""GeneratorActor pool: named actors, the same videos as in-process, a killed actor's call still returns."""
from __future__ import annotations

import time

import numpy as np
import pytest

from argen_ray.actors.generator import GeneratorPool, generator_actor_name
from argen_ray.ard.generator import GenerationRequest, build_generator
from argen_ray.ard.guidance import guidance_curve
from argen_ray.ard.tiny_models import tiny_t2v_path
from argen_ray.ard.ti2v import TI2VInputError
from argen_ray.config import load_config

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")
NAMESPACE = "argen-test-generator"


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=2, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    # The actor loads the folder the driver built: no cache lookup inside the worker.
    return load_config(None, [f"run_dir={tmp_path_factory.mktemp('run')}", f"ray.namespace={NAMESPACE}",
                              "generator.backend=ti2v", f"generator.model={tiny_t2v_path()}",
                              "generator.num_frames=16", "generator.window=16", "generator.height=64",
                              "generator.width=64", "generator.num_cpus=1"])


@pytest.fixture(scope="module")
def pool(ray_session, cfg):
    pool = GeneratorPool.from_config(cfg)
    yield pool
    pool.shutdown()


def _face(seed=0):
    return (np.random.default_rng(seed).random((72, 64, 3)) * 255).astype(np.uint8)


def test_pool_generates_16_frame_videos_equal_to_in_process_ones(pool, cfg):
    requests = [GenerationRequest(image=_face(), prompt="a surprised face, the brows rise", steps=2,
                                  guidance=guidance_curve(15, 2.0, 1.5, 6.0, 12.0), seed=7, request_id="a"),
                GenerationRequest(image=_face(1), prompt="a fearful face, the jaw drops", steps=1, guidance=9.0,
                                  seed=8, request_id="b")]
    remote = pool.generate(requests)
    local = build_generator(cfg.generator).generate(requests)
    assert [r.request_id for r in remote] == ["a", "b"]
    for r, l in zip(remote, local):
        assert r.frames.shape == (16, 64, 64, 3) and r.frames.dtype == np.uint8
        assert r.nfe == l.nfe and r.model_id == l.model_id
        assert np.abs(r.frames.astype(int) - l.frames).max() <= 1
    assert [r.nfe for r in remote] == [15 * 2 * 2, 15 * 1 * 2]
    # Env runners reach the same actor by name.
    named = ray.get_actor(generator_actor_name(0), namespace=NAMESPACE)
    assert named._actor_id == pool.actors[0]._actor_id
    assert ray.get(named.info.remote())["generated"] >= 2
    text, image = pool.encode_state(["a surprised face"], [_face()])
    assert text.shape == (1, 32) and image.shape == (1, 4 * 8 * 8)


def test_a_call_on_one_actor_stays_one_call_of_whole_groups(pool, cfg):
    # The backend batches by generator.max_batch itself; the pool only spreads a call over actors,
    # so with one actor the backend sees the whole call (the warp renders its identical clips once).
    requests = [GenerationRequest(image=_face(n), prompt="a surprised face", steps=1, guidance=9.0, seed=n,
                                  request_id=f"r{n}") for n in range(cfg.generator.max_batch + 2)]
    before = ray.get(pool.actors[0].info.remote())
    results = pool.generate(requests)
    after = ray.get(pool.actors[0].info.remote())
    assert [r.request_id for r in results] == [q.request_id for q in requests]
    assert after["calls"] - before["calls"] == 1
    assert after["generated"] - before["generated"] == len(requests)
    assert pool.generate([]) == []


def test_bad_request_raises_the_backend_error(pool):
    bad = GenerationRequest(image=_face(), prompt="a face", steps=2, guidance=np.ones(3), request_id="short-curve")
    with pytest.raises(TI2VInputError, match="short-curve.*15 per-frame values"):
        pool.generate([bad])


def test_killed_actor_restarts_and_its_call_still_returns(pool):
    actor = pool.actors[0]
    pid_before = ray.get(actor.info.remote())["pid"]
    request = GenerationRequest(image=_face(), prompt="a disgusted face", steps=4, guidance=9.0, seed=3,
                                request_id="survivor")
    ref = actor.generate.remote([request])
    time.sleep(2.0)  # the call is running (60 UNet calls)
    ray.kill(actor, no_restart=False)
    [result] = ray.get(ref, timeout=300)
    assert result.request_id == "survivor" and result.frames.shape == (16, 64, 64, 3) and result.nfe == 15 * 4 * 2
    info = ray.get(actor.info.remote())
    assert info["pid"] != pid_before and info["generated"] == 1
