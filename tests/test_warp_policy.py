"""Policy training on the warp backend learns the R_e trade-off: with a strong R_e weight the
learned policy prefers gentler intensity curves (a lower mean schedule) than without R_e.

Real everything: demo-dataset prompts, the warp generator behind the generator actors, the
reward scorer pool (Haar, SSIM, landmark AUs), RLlib group REINFORCE through `PolicyTrainer`
(what `argen-ray train` runs). Kept short: one steps value, alpha and beta in {1, 3} (flat, ramp
up, relax, bell), 4 iterations (measured: mean intensity strong R_e 0.356, weak 0.973, untrained
0.781).
Measured (in-process, 10 iterations): without R_e the policy settles on the flat curve (mean
intensity 1.0: R_q's sharpness and contrast rise with the opened mouth), with w_e = 1 on the
relaxing curve (0.36); both within about 5 iterations. 16-frame clips: with 6 frames R_q barely
separates the curves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train_setup import ROOT, fast_overrides, fresh_run, train_in_process

pytest.importorskip("argen_ray.actors.generator", reason="the generator actor pool (argen_ray/actors/generator.py) "
                                                         "is not in this checkout yet")

SHAPES = [1.0, 3.0]
NUM_FRAMES = 16
ITERATIONS = 4


def mean_intensity(probs_alpha: np.ndarray, probs_beta: np.ndarray, w_min: float, w_max: float) -> float:
    """Expected mean of the warp's expression schedule under the factorised alpha/beta heads (no
    measured dynamics in this run: the curve's running maximum over the clip)."""
    from argen_ray.ard.guidance import guidance_curve
    from argen_ray.ard.warp import intensity_schedule
    from argen_ray.ard.warp_variation import expression_schedule

    n = NUM_FRAMES - 1
    table = np.array([[expression_schedule(intensity_schedule(guidance_curve(n, a, b, w_min, w_max), n, w_min,
                                                              w_max)).mean()
                       for b in SHAPES] for a in SHAPES])
    return float(np.einsum("sa,sb,ab->s", probs_alpha, probs_beta, table).mean())


def train(tmp_path_factory, run_dir: Path, w_e: float) -> float:
    from argen_ray.config import load_config

    run_dir = fresh_run(tmp_path_factory, run_dir)
    cfg = load_config(ROOT / "configs" / "local.yaml", fast_overrides(
        run_dir, train__iterations=ITERATIONS, train__eval_states=0, train__lr=0.01,
        reward__w_e=w_e, reward__w_t=0.25, reward__w_q=0.25, reward__w_f=0.25,
        # the paper's rewards (no R_c) on full 16-frame candidates, as measured
        reward__w_c=0, train__candidate_frames=NUM_FRAMES,
        generator__num_frames=NUM_FRAMES, generator__action_space__steps="[5]",
        generator__action_space__alpha=str(SHAPES), generator__action_space__beta=str(SHAPES)))
    _, policy, states = train_in_process(cfg, evaluate=False)  # both trainings share one Ray start
    _, (_, probs_alpha, probs_beta) = policy.act(states.text_emb, states.image_emb)
    return mean_intensity(probs_alpha, probs_beta, 6.0, 12.0)


@pytest.fixture(scope="module")
def ray_session():
    import ray

    yield
    ray.shutdown()


@pytest.mark.slow
def test_strong_expression_weight_learns_gentler_curves(ray_session, tmp_path_factory, tmp_path):
    uniform = mean_intensity(np.full((1, 2), 0.5), np.full((1, 2), 0.5), 6.0, 12.0)
    strong = train(tmp_path_factory, tmp_path / "strong", w_e=1.0)
    weak = train(tmp_path_factory, tmp_path / "weak", w_e=0.0)
    print(f"mean intensity: untrained {uniform:.3f}, strong R_e {strong:.3f}, weak R_e {weak:.3f}")
    assert strong < uniform - 0.05, f"strong R_e: mean intensity {strong:.3f}, untrained {uniform:.3f}"
    assert strong < weak - 0.1, f"strong R_e {strong:.3f} vs weak R_e {weak:.3f}"
