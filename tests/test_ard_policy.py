"""The policy: attention RLModule inside RLlib, greedy handle, exported file round trip."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from argen_ray.ard.policy import (PolicyHandle, PolicyLoadError, PolicyNetwork, PolicyRLModule, export_policy,
                                  load_policy)
from argen_ray.errors import ArgenError

NVEC = [5, 4, 4]


def _module(text_dim=12, image_dim=7, nvec=NVEC):
    obs = gym.spaces.Dict(text_emb=gym.spaces.Box(-np.inf, np.inf, (text_dim,), np.float32),
                          image_emb=gym.spaces.Box(-np.inf, np.inf, (image_dim,), np.float32))
    torch.manual_seed(0)
    return PolicyRLModule(observation_space=obs, action_space=gym.spaces.MultiDiscrete(nvec),
                          model_config={"embed_dim": 16, "num_heads": 4})


def _batch(n=6, text_dim=12, image_dim=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, text_dim)).astype(np.float32), rng.normal(size=(n, image_dim)).astype(np.float32)


def test_module_outputs_one_logit_per_choice_of_each_head_and_argmax_at_inference():
    from ray.rllib.core.columns import Columns

    module = _module()
    text, image = _batch()
    out = module.forward_inference({Columns.OBS: {"text_emb": torch.from_numpy(text),
                                                  "image_emb": torch.from_numpy(image)}})
    logits = out[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (6, sum(NVEC))
    dist = module.get_inference_action_dist_cls().from_logits(logits)
    greedy = dist.to_deterministic().sample().numpy()
    actions, probs = PolicyHandle(module.net).act(text, image)
    np.testing.assert_array_equal(actions, greedy)
    assert [p.shape for p in probs] == [(6, n) for n in NVEC]
    for p in probs:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # Sampling stays inside each head's range and the factorised log-prob is the sum of heads.
    sample = module.get_exploration_action_dist_cls().from_logits(logits).sample()
    assert ((sample >= 0) & (sample < torch.tensor(NVEC))).all()


def test_log_prob_is_the_sum_of_the_three_heads_log_probs():
    """log pi(a|s) = log pi_T(T) + log pi_alpha(alpha) + log pi_beta(beta) (DESIGN 2.3)."""
    from ray.rllib.core.columns import Columns

    module = _module()
    dist_cls = module.get_exploration_action_dist_cls()
    # By hand: probabilities chosen so each head's softmax is known exactly.
    probs = [np.array([1, 2, 3, 4, 10]) / 20, np.full(4, 0.25), np.array([5, 1, 1, 1]) / 8]
    logits = torch.tensor(np.concatenate([np.log(p) + shift for p, shift in zip(probs, (3.0, -1.0, 0.5))]),
                          dtype=torch.float64)[None]
    actions = torch.tensor([[4, 2, 0], [0, 1, 3], [2, 3, 1]])
    logp = dist_cls.from_logits(logits.expand(3, -1)).logp(actions).numpy()
    expected = [np.log(10 / 20) + np.log(1 / 4) + np.log(5 / 8),
                np.log(1 / 20) + np.log(1 / 4) + np.log(1 / 8),
                np.log(3 / 20) + np.log(1 / 4) + np.log(1 / 8)]
    np.testing.assert_allclose(logp, expected, rtol=1e-12)
    # On the module's own logits: the same sum of per-head log-softmax, computed in numpy.
    text, image = _batch()
    out = module.forward_exploration({Columns.OBS: {"text_emb": torch.from_numpy(text),
                                                    "image_emb": torch.from_numpy(image)}})
    raw = out[Columns.ACTION_DIST_INPUTS].detach().double()
    sample = dist_cls.from_logits(raw).sample()
    heads = np.split(raw.numpy(), np.cumsum(NVEC)[:-1], axis=1)
    by_hand = sum(h[np.arange(len(h)), sample[:, i].numpy()] - np.log(np.exp(h).sum(axis=1))
                  for i, h in enumerate(heads))
    np.testing.assert_allclose(dist_cls.from_logits(raw).logp(sample).numpy(), by_hand, rtol=1e-10)
    # Raising one alpha logit moves only the alpha term: the heads are independent factors.
    bumped = raw.clone()
    bumped[:, NVEC[0] + 1] += 1.0
    delta = dist_cls.from_logits(bumped).logp(sample).numpy() - dist_cls.from_logits(raw).logp(sample).numpy()
    a_heads = heads[1].copy()
    a_heads[:, 1] += 1.0
    alpha_term = lambda h: h[np.arange(len(h)), sample[:, 1].numpy()] - np.log(np.exp(h).sum(axis=1))  # noqa: E731
    np.testing.assert_allclose(delta, alpha_term(a_heads) - alpha_term(heads[1]), rtol=1e-9, atol=1e-12)


def test_states_change_the_decision():
    """Attention over both tokens: different embeddings give different head probabilities."""
    module = _module()
    text, image = _batch(n=2)
    _, probs = PolicyHandle(module.net).act(text, image)
    assert not np.allclose(probs[0][0], probs[0][1])


def test_exported_policy_acts_like_the_trained_module(tmp_path):
    module = _module()
    meta = {"action_values": {"steps": [5, 10, 15, 20, 25], "alpha": [1, 1.5, 2, 3], "beta": [1, 1.5, 2, 3]},
            "iteration": 7}
    path = export_policy(module.net, tmp_path / "policy" / "policy.pt", meta)
    text, image = _batch(n=9, seed=3)
    expected = PolicyHandle(module.net).act(text, image)
    for source in (path, path.parent):  # the file or the folder holding it
        handle = load_policy(source)
        actions, probs = handle.act(text, image)
        np.testing.assert_array_equal(actions, expected[0])
        for got, want in zip(probs, expected[1]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert handle.action_values["steps"] == [5, 10, 15, 20, 25] and handle.meta["iteration"] == 7
    # One state as a 1-D vector works too.
    assert handle.act(text[0], image[0])[0].shape == (1, 3)


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(PolicyLoadError, match="does not exist"):
        load_policy(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyLoadError, match="neither policy.pt"):
        load_policy(tmp_path / "empty")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(PolicyLoadError, match="not an ARGen policy"):
        load_policy(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(PolicyLoadError, match="not a readable policy file"):
        load_policy(garbage)
    handle = PolicyHandle(PolicyNetwork(12, 7, NVEC, 16, 4))
    with pytest.raises(ArgenError, match=r"text_emb: expected shape \(B, 12\)"):
        handle.act(np.zeros((2, 5)), np.zeros((2, 7)))


def test_module_rejects_spaces_it_cannot_serve():
    with pytest.raises(ValueError, match="Dict observation"):
        PolicyRLModule(observation_space=gym.spaces.Box(0, 1, (4,)), action_space=gym.spaces.MultiDiscrete(NVEC))
    obs = gym.spaces.Dict(text_emb=gym.spaces.Box(0, 1, (4,)), image_emb=gym.spaces.Box(0, 1, (4,)))
    with pytest.raises(ValueError, match="3 heads"):
        PolicyRLModule(observation_space=obs, action_space=gym.spaces.MultiDiscrete([5, 4]))
