"""ARGenEnv on real actors: one vector step = the G candidates of one state, scored and turned into
group rewards; NEXT_STEP autoreset; every state visited; a generator actor killed mid-call is
restarted and retried; evaluation calls pipelined give the scores of plain calls."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from train_setup import ROOT, fast_overrides, fresh_run

pytestmark = pytest.mark.slow  # starts Ray and trains or fits


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import ray

    from argen_ray.ard.env import CandidateEvaluator
    from argen_ray.ard.states import build_state_encoder, load_states
    from argen_ray.config import load_config
    from argen_ray.runtime import init_ray

    run_dir = fresh_run(tmp_path_factory, tmp_path_factory.mktemp("env") / "run")
    cfg = load_config(ROOT / "configs" / "local.yaml", fast_overrides(run_dir, reward__w_e=0))
    init_ray(cfg)
    evaluator = CandidateEvaluator(cfg)
    states = load_states(cfg, build_state_encoder(cfg, evaluator.generators))
    yield cfg, states
    ray.shutdown()


def _env(cfg, states):
    from argen_ray.ard.env import ARGenEnv

    return ARGenEnv({"cfg": cfg, "states": states, "num_envs": cfg.reward.group_size})


def test_one_vector_step_scores_the_group_of_one_state(world):
    cfg, states = world
    env = _env(cfg, states)
    obs, infos = env.reset(seed=3)
    G = cfg.reward.group_size
    assert obs["text_emb"].shape == (G, states.text_emb.shape[1])
    assert (obs["text_emb"] == obs["text_emb"][0]).all() and len(set(infos["group_id"])) == 1
    steps_values = cfg.generator.action_space.steps
    actions = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [4, 3, 0]])[:G]
    obs2, rewards, terminated, truncated, step_infos = env.step(actions)
    assert terminated.all() and not truncated.any()
    # The env applies the group rule to the raw scores (in the infos): top-k keep S, the rest -delta,
    # minus the group mean (train.group_baseline), over the group's std (train.group_scale); the
    # group id is the one of the reset.
    scores = np.asarray(step_infos["score"], float)
    kth = np.sort(scores)[::-1][cfg.reward.top_k - 1]
    rule = np.where(scores >= kth, scores, -cfg.reward.penalty)
    assert cfg.train.group_baseline and cfg.train.group_scale  # the defaults
    np.testing.assert_allclose(rewards, (rule - rule.mean()) / (rule.std() + 1e-3), rtol=1e-5, atol=1e-5)
    assert list(step_infos["group_id"]) == list(infos["group_id"])
    chosen = [steps_values[a[0]] for a in actions]
    assert list(step_infos["steps"]) == chosen
    np.testing.assert_allclose(step_infos["r_t"], [1 - t / max(steps_values) for t in chosen])
    assert all(r is None for r in step_infos["r_e"])  # reward.w_e = 0: R_e is not computed
    assert (step_infos["nfe"] > 0).all() and step_infos["generate_s"][0] > 0
    # NEXT_STEP autoreset: the following step starts a new state, no reward, not terminal.
    obs3, rewards3, terminated3, _, infos3 = env.step(actions)
    assert not terminated3.any() and (rewards3 == 0).all()
    assert infos3["group_id"][0] != infos["group_id"][0]


def test_candidates_are_short_videos_of_train_candidate_frames(world):
    from argen_ray.ard.env import CandidateEvaluator

    cfg, states = world
    short = cfg.model_copy(deep=True)
    short.train.candidate_frames = 5  # the reference + 4 new frames; generator.num_frames stays 8
    evaluator = CandidateEvaluator(short)
    assert evaluator.action_space.num_frames == 4  # the guidance curve spans the candidate's new frames
    rows = evaluator.evaluate(states, [0, 0], np.array([[0, 0, 0], [4, 3, 0]]), seed=2)
    assert [r["num_frames"] for r in rows] == [5, 5]
    assert cfg.generator.num_frames == 8 and cfg.train.candidate_frames == 8
    full = CandidateEvaluator(cfg).evaluate(states, [0], np.array([[0, 0, 0]]), seed=2)
    assert full[0]["num_frames"] == 8


def test_identical_clips_are_scored_once_and_each_copy_keeps_its_own_r_t(world):
    """On an 8-frame candidate the warp backend solves min(T, 7) keyframes: T = 10 and T = 15 give
    one clip. The scorers see each distinct clip once; every candidate still gets the score it
    gets when scored on its own, with its own R_t."""
    from argen_ray.ard.env import CandidateEvaluator

    cfg, states = world

    class Spy:
        """Passes calls through, recording the clips generated and the videos sent to scoring."""

        def __init__(self, pool):
            self.pool, self.clips, self.videos = pool, [], 0

        def generate(self, requests):
            results = self.pool.generate(requests)
            self.clips.extend(r.frames.tobytes() for r in results)
            return results

        def score_many(self, videos, *args, **kwargs):
            self.videos += len(videos)
            return self.pool.score_many(videos, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.pool, name)

    evaluator = CandidateEvaluator(cfg)
    generators, scorers = Spy(evaluator.generators), Spy(evaluator.scorers)
    evaluator._generators, evaluator._scorers = generators, scorers
    actions = np.array([[1, 0, 0], [2, 0, 0], [1, 0, 0], [0, 0, 0], [0, 3, 3]])  # T = 10, 15, 10: one clip
    rows = evaluator.evaluate(states, [0] * 5, actions, seed=5)
    assert len(set(generators.clips[:3])) == 1
    assert scorers.videos == len(set(generators.clips)) <= 3
    alone = [evaluator.evaluate(states, [0], actions[n:n + 1], seed=5)[0] for n in range(5)]
    for row, single in zip(rows, alone):
        for name in ("score", "r_t", "r_q", "r_f", "r_c"):
            assert row[name] == pytest.approx(single[name], abs=1e-12), name
    steps = cfg.generator.action_space.steps
    assert [r["r_t"] for r in rows] == pytest.approx([1 - steps[a[0]] / max(steps) for a in actions])
    assert rows[0]["score"] - rows[1]["score"] == pytest.approx(cfg.reward.w_t * (steps[2] - steps[1]) / max(steps))


def test_evaluate_many_gives_the_scores_of_one_call_after_the_other(world):
    """The held-out evaluation generates the next call's videos while scoring this one's: same
    rows, same order as evaluating the calls one by one."""
    from argen_ray.ard.env import CandidateEvaluator

    cfg, states = world
    evaluator = CandidateEvaluator(cfg)
    decode = evaluator.action_space.decode
    calls = [(states, [0, 1], [decode(np.array([0, 1, 2])), decode(np.array([1, 3, 0]))], 11),
             (states, [1], [decode(np.array([0, 0, 0]))], 12),
             (states, [0, 0, 1], [decode(np.array([0, 2, 2]))] * 3, 13)]
    piped = list(evaluator.evaluate_many(calls))
    alone = [evaluator.evaluate_params(*call) for call in calls]
    assert [len(rows) for rows in piped] == [2, 1, 3]
    for rows, single in zip(piped, alone):
        for row, expected in zip(rows, single):
            for name in ("score", "r_q", "r_f", "r_c", "steps", "alpha", "beta"):
                assert row[name] == expected[name], name


def test_candidate_frames_below_two_is_a_named_error():
    from argen_ray.ard.env import CandidateEvaluator
    from argen_ray.config import load_config
    from argen_ray.errors import ArgenError

    with pytest.raises(ArgenError, match="train.candidate_frames must be an integer >= 2"):
        CandidateEvaluator(load_config(None, ["train.candidate_frames=1"]))


def test_field_means_skip_values_that_were_not_computed():
    from argen_ray.ard.env import field_means

    rows = [{"score": 0.2, "r_e": None, "nfe": 4}, {"score": 0.4, "r_e": None, "nfe": 6}]
    assert field_means(rows) == pytest.approx({"score": 0.3, "nfe": 5.0})
    # A value missing from some rows is the mean of the rows that have it.
    mixed = rows + [{"score": 0.6, "r_e": 0.9}]
    assert field_means(mixed, ("score", "r_e")) == pytest.approx({"score": 0.4, "r_e": 0.9})


def test_every_state_is_visited_once_per_pass(world):
    cfg, states = world
    env = _env(cfg, states)
    env.reset(seed=0)
    seen = {env.states.rows[env._state]["prompt_id"]}
    for _ in range(len(states) - 1):
        _, infos = env.reset()
        seen.add(infos["prompt_id"][0])
    assert seen == {r["prompt_id"] for r in states.rows}


def test_generator_actor_killed_mid_call_is_restarted_and_the_request_retried(world):
    import ray

    from argen_ray.ard.env import CandidateEvaluator

    cfg, states = world
    evaluator = CandidateEvaluator(cfg)
    n = 24  # several batched calls (generator.max_batch each), so the kill lands inside them
    # 24 distinct clips (T 5 or 10 x every alpha/beta): the warp renders a call's identical requests
    # once, and 24 copies of one clip would finish before the kill lands.
    actions = np.array([[t, a, b] for t in (0, 1) for a in range(4) for b in range(4)][:n])
    victim = evaluator.generators.actors[0]
    pid = ray.get(victim.info.remote())["pid"]
    evaluator.evaluate(states, [0] * 2, actions[:2], seed=0)  # warm-up: the models load on the first call
    t0 = time.perf_counter()
    expected = evaluator.evaluate(states, [0] * n, actions, seed=1)
    # Generation is only part of a call (scoring follows), and how large a part depends on the
    # machine: kill earlier and earlier until the kill lands inside a generation call.
    delay = (time.perf_counter() - t0) / 3
    for _ in range(6):
        killer = threading.Timer(delay, lambda: ray.kill(victim, no_restart=False))
        killer.start()
        rows = evaluator.evaluate(states, [0] * n, actions, seed=1)
        killer.join()
        info = ray.get(victim.info.remote())
        assert info["pid"] != pid, "the actor was not restarted"
        pid = info["pid"]
        # Every video came back, with the same (seeded) scores.
        assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in expected])
        if info["generated"] > 0:  # the restarted actor served the resent request
            break
        delay /= 2
    else:
        pytest.fail("no kill landed inside a generation call")


def test_group_advantages_apply_the_group_rule_then_the_baseline_and_scale():
    from argen_ray.ard.env import group_advantages

    scores = [0.85, 0.82, 0.82, 0.40]
    # DESIGN 2.3: top-k (k = 2; a tie at the k-th score keeps S) keep S, the rest -delta.
    assert group_advantages(scores, 2, 0.1, baseline=False) == pytest.approx([0.85, 0.82, 0.82, -0.1])
    rewards = np.array([0.85, 0.82, 0.82, -0.1])
    assert group_advantages(scores, 2, 0.1, baseline=True) == pytest.approx(rewards - rewards.mean())
    # Scaled: a settled group's small spread (hand-computed std 0.01299) weighs as much as a wide one.
    settled = group_advantages([0.85, 0.82, 0.82, 0.82], 2, 0.1, baseline=True, scale=True)
    assert settled == pytest.approx([0.0225 / 0.01399, -0.0075 / 0.01399, -0.0075 / 0.01399, -0.0075 / 0.01399],
                                    rel=2e-3)
    assert group_advantages([0.5] * 4, 2, 0.1, baseline=True, scale=True) == pytest.approx([0.0] * 4)
