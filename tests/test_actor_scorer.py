"""The ScorerActor pool: named actors, scores equal to in-process scores, crashes rescored."""
from __future__ import annotations

import os

import numpy as np
import pytest

from argen_ray.actors.scorer import ScorerPool, ScorerPoolError, scorer_actor_name
from argen_ray.ard.rewards import RewardInputError, RewardScorer
from argen_ray.config import load_config

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray.init(address="local", num_cpus=2, namespace="argen-test-scorer", include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(tmp_path, *overrides):
    # w_e = 0 keeps these tests about the pool (R_e itself is covered by test_ard_rewards).
    return load_config(None, [f"run_dir={tmp_path}", "ray.namespace=argen-test-scorer",
                              "reward.num_scorers=2", "reward.scorer_num_cpus=0.5", "reward.w_e=0",
                              *overrides])


def _videos(n, seed=0, frames=6, side=48):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, side, side, 3), dtype=np.uint8)
    noise = rng.integers(0, 40, (n, frames, side, side, 3), dtype=np.uint8)
    return [np.clip(b.astype(int) + nz, 0, 255).astype(np.uint8) for b, nz in zip(base, noise)]


def test_pool_scores_equal_in_process_scores_and_actors_are_named(ray_session, tmp_path):
    cfg = _cfg(tmp_path)
    pool = ScorerPool.from_config(cfg)
    try:
        videos, steps = _videos(6), [5, 10, 15, 20, 25, 10]
        expected = RewardScorer(cfg.reward, 25).score_many(videos, steps=steps)
        assert pool.score_many(videos, steps=steps) == expected
        # Env runners reach the very same actors by name (get-or-create returns them).
        again = ScorerPool.from_config(cfg)
        assert [a._actor_id for a in again.actors] == [a._actor_id for a in pool.actors]
        named = ray.get_actor(scorer_actor_name(1), namespace=cfg.ray.namespace)
        assert named._actor_id == pool.actors[1]._actor_id
        assert sum(i["scored"] for i in pool.info()) == 6
    finally:
        pool.shutdown()


def test_target_aus_reach_the_actors_for_the_validity_reward(ray_session, tmp_path):
    cfg = _cfg(tmp_path, "reward.w_c=0.5", "ray.namespace=argen-test-scorer-rc")
    pool = ScorerPool.from_config(cfg)
    try:
        videos, steps = _videos(3), [5, 10, 15]
        targets = [{"AU01": 0.8, "AU02": 0.8}, {"AU12": 0.6}, {"AU09": 0.5, "AU16": 0.4}]
        scores = pool.score_many(videos, steps=steps, target_aus=targets)
        assert scores == RewardScorer(cfg.reward, 25).score_many(videos, steps=steps, target_aus=targets)
        assert [s["rc_targets"] for s in scores] == targets and all(s["r_c"] is not None for s in scores)
        with pytest.raises(RewardInputError, match=r"video 0: target_aus .* is required when reward.w_c > 0"):
            pool.score_many(videos[:1], steps=[5])
    finally:
        pool.shutdown()


def test_killed_actor_is_restarted_and_its_videos_rescored(ray_session, tmp_path):
    cfg = _cfg(tmp_path)
    pool = ScorerPool.from_config(cfg)
    try:
        # Videos that take tens of ms each, so the killed actor is still busy with its queue.
        videos, steps = _videos(10, seed=1, frames=16, side=128), [10] * 10
        expected = RewardScorer(cfg.reward, 25).score_many(videos, steps=steps)
        old_pid = pool.info()[0]["pid"]
        results = {}
        for index, result in pool.iter_scores(videos, steps=steps):
            if not results:  # mid-batch: actor 0 still holds queued videos
                ray.kill(pool.actors[0], no_restart=False)
            results[index] = result
        assert sorted(results) == list(range(10))
        assert [results[i] for i in range(10)] == expected
        assert pool.rescored, "the killed actor's queued videos must have been rescored"
        assert pool.info()[0]["pid"] != old_pid  # restarted, detectors loaded again
    finally:
        pool.shutdown()


def test_bad_input_and_bad_detector_are_clear_errors(ray_session, tmp_path):
    cfg = _cfg(tmp_path)
    pool = ScorerPool.from_config(cfg)
    try:
        with pytest.raises(RewardInputError, match="video 1: frames must be uint8"):
            pool.score_many([_videos(1)[0], np.zeros((4, 48, 48, 3), np.float32)], steps=[5, 5])
        with pytest.raises(RewardInputError, match=r"steps must be an integer in \[1, 25\]"):
            pool.score_many(_videos(2), steps=[5, 30])
    finally:
        pool.shutdown()
    bad = _cfg(tmp_path, "reward.face_detector=nope", "ray.namespace=argen-test-scorer-bad")
    with pytest.raises(ScorerPoolError, match="reward.face_detector"):
        ScorerPool.from_config(bad)


class _Crasher:
    """A scorer actor whose process dies on every video (restarted by Ray each time)."""

    def score(self, frames, reference, steps, target_aus=None):
        os._exit(1)

    def info(self) -> dict:
        return {"pid": os.getpid()}


def test_a_crashing_actor_is_backed_off_then_named_when_the_pool_gives_up(ray_session, tmp_path, monkeypatch):
    import argen_ray.actors.scorer as scorer

    monkeypatch.setattr(scorer, "RESCORE_BACKOFF_S", 0.05)
    cfg = _cfg(tmp_path, "reward.scorer_max_rescores=2")
    actor = ray.remote(_Crasher).options(name=scorer_actor_name(0), namespace=cfg.ray.namespace, num_cpus=0.5,
                                         max_restarts=-1, max_task_retries=0).remote()
    pool = ScorerPool([actor], cfg.reward, cfg.ray.namespace)
    try:
        # Rescores wait for the restarting actor (0.05 s, then doubling) instead of hitting it at once.
        with pytest.raises(ScorerPoolError, match=r"video 0: its scorer actor crashed 3 times, the last time "
                                                  r"scorer actor 'argen-scorer-0' \(reward.scorer_max_rescores=2\)"):
            pool.score_many(_videos(1), steps=[5])
        assert pool.rescored == [0, 0] and pool.backoff_s == pytest.approx(0.05 + 0.1 + 0.2)
        # The total back-off on one actor is bounded, whatever scorer_max_rescores allows.
        monkeypatch.setattr(scorer, "RESCORE_MAX_WAIT_S", 0.1)
        pool.cfg = cfg.reward.model_copy(update={"scorer_max_rescores": 100})
        with pytest.raises(ScorerPoolError, match=r"video 0: scorer actor 'argen-scorer-0' kept crashing "
                                                  r"\(2 crashes in a row, 0.05 s of back-off"):
            pool.score_many(_videos(1), steps=[5])
    finally:
        pool.shutdown()


def test_actors_run_in_the_runtime_env_the_config_names(ray_session, tmp_path):
    """reward.scorer_runtime_env (e.g. py-feat's pins) reaches the actors; a missing file is named."""
    env_file = tmp_path / "scorer-env.yaml"
    env_file.write_text("env_vars:\n  ARGEN_SCORER_ENV: from-the-yaml\n")
    cfg = _cfg(tmp_path, f"reward.scorer_runtime_env={env_file}", "reward.num_scorers=1",
               "ray.namespace=argen-test-scorer-env")
    pool = ScorerPool.from_config(cfg)
    try:
        seen = ray.get(pool.actors[0].__ray_call__.remote(lambda self: os.environ.get("ARGEN_SCORER_ENV")))
        assert seen == "from-the-yaml"
    finally:
        pool.shutdown()
    missing = _cfg(tmp_path, f"reward.scorer_runtime_env={tmp_path / 'nope.yaml'}", "ray.namespace=argen-test-scorer-env2")
    with pytest.raises(ScorerPoolError, match="reward.scorer_runtime_env: Ray runtime_env file .*nope.yaml does not exist"):
        ScorerPool.from_config(missing)
