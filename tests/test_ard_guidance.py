"""Guidance curve shape (DESIGN 2.2) and the policy's action space decoding."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.ard.guidance import ActionError, ActionSpace, guidance_curve
from argen_ray.config import load_config


def test_flat_curve_is_w_max_everywhere():
    np.testing.assert_allclose(guidance_curve(15, 1.0, 1.0, 6.0, 12.0), np.full(15, 12.0))


def test_curve_stays_in_range_and_reaches_w_max_once_normalised():
    for alpha, beta in [(1, 3), (3, 1), (2, 2), (1.5, 3), (3, 1.5)]:
        w = guidance_curve(15, alpha, beta, 6.0, 12.0)
        assert w.shape == (15,)
        assert w.min() >= 6.0 and np.isclose(w.max(), 12.0)


def test_endpoints_follow_alpha_and_beta():
    # alpha = 1, beta > 1: decreasing, strongest guidance on the first frame.
    early = guidance_curve(15, 1.0, 3.0, 6.0, 12.0)
    assert np.all(np.diff(early) < 0) and early[0] == early.max()
    # alpha > 1, beta = 1: increasing, strongest on the last frame.
    late = guidance_curve(15, 3.0, 1.0, 6.0, 12.0)
    assert np.all(np.diff(late) > 0) and late[-1] == late.max()
    # alpha = beta > 1: symmetric, both ends near w_min.
    mid = guidance_curve(15, 3.0, 3.0, 6.0, 12.0)
    np.testing.assert_allclose(mid, mid[::-1])
    assert mid[0] < 6.5 and mid[-1] < 6.5


@pytest.mark.parametrize("alpha, beta", [(2, 3), (3, 2), (1.5, 2), (3, 3), (2, 1.5)])
def test_peak_sits_at_the_beta_mode(alpha, beta):
    n = 15
    w = guidance_curve(n, alpha, beta, 6.0, 12.0)
    u = (np.arange(1, n + 1) - 0.5) / n
    mode = (alpha - 1) / (alpha + beta - 2)
    assert abs(u[np.argmax(w)] - mode) <= 1 / n


def test_curve_formula_at_one_point():
    n, alpha, beta = 4, 2.0, 3.0
    u = (np.arange(1, n + 1) - 0.5) / n
    g = u ** (alpha - 1) * (1 - u) ** (beta - 1)
    np.testing.assert_allclose(guidance_curve(n, alpha, beta, 6.0, 12.0), 6.0 + 6.0 * g / g.max())


@pytest.mark.parametrize("args, message", [
    ((0, 1.0, 1.0, 6.0, 12.0), "num_frames"),
    ((5, 0.0, 1.0, 6.0, 12.0), "alpha and beta must be positive"),
    ((5, 1.0, 1.0, 12.0, 6.0), "w_min"),
])
def test_bad_curve_parameters_are_named(args, message):
    with pytest.raises(ActionError, match=message):
        guidance_curve(*args)


def test_action_space_from_config_decodes_and_encodes():
    cfg = load_config(None, ["generator.num_frames=16"])
    space = ActionSpace.from_config(cfg.generator)
    assert space.nvec.tolist() == [5, 4, 4]
    params = space.decode(np.array([1, 0, 3]))
    assert (params.steps, params.alpha, params.beta) == (10, 1.0, 3.0)
    np.testing.assert_allclose(params.guidance, guidance_curve(15, 1.0, 3.0, 6.0, 12.0))
    for action in np.ndindex(*space.nvec):
        p = space.decode(np.array(action))
        assert space.encode(p.steps, p.alpha, p.beta).tolist() == list(action)


def test_policy_value_sets_override_the_config():
    cfg = load_config(None, [])
    space = ActionSpace.from_config(cfg.generator, {"steps": [4, 8], "alpha": [1.0], "beta": [1.0, 2.0]})
    assert space.nvec.tolist() == [2, 1, 2]
    assert space.decode([1, 0, 1]).steps == 8


@pytest.mark.parametrize("action", [[5, 0, 0], [0, -1, 0], [0, 0], [0.5, 0, 0]])
def test_out_of_range_actions_are_errors(action):
    space = ActionSpace.from_config(load_config(None, []).generator)
    with pytest.raises(ActionError, match="action must be 3 integer indices"):
        space.decode(np.array(action))


def test_encoding_a_value_outside_the_set_is_an_error():
    space = ActionSpace.from_config(load_config(None, []).generator)
    with pytest.raises(ActionError, match="steps=7 is not in the action set"):
        space.encode(7, 1.0, 1.0)
