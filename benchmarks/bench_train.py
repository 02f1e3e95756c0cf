"""Overhead of policy training on Ray (issue 6, item 8), from one run (numbers in docs/training.md).

On the local preset's cheapest real backend (warp) and the demo prompts:

1. Baseline, in this process: the G candidates of B states generated with the backend directly
   (one batched call per group) and scored with `RewardScorer` directly: the work itself.
2. Training on Ray: `PolicyTrainer` iterations. Every environment step is one group; the env
   reports the wall time of its batched generator call and of scoring its G videos on the
   scorer pool. The rest of the iteration — RLlib's sampling loop, actor calls, serialisation,
   the learner update, weight sync — is the overhead.

Prints the time per environment step split into generation, scoring and everything else, the
share of wall time that is neither generation nor scoring, and the ratio of the training time
per group to the in-process baseline per group.

    .venv/bin/python benchmarks/bench_train.py [--iterations 4] [--batch-size 4] [--run-dir DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ensure_prompts(run_dir: Path, demo: list[str]) -> None:
    if (run_dir / "prompts" / "prompts.jsonl").is_file():
        return
    sets = [x for o in [f"run_dir={run_dir}", *demo] for x in ("--set", o)]
    for command in (["demo-data"], ["prompts", "--no-progress"]):
        subprocess.run([sys.executable, "-m", "argen_ray.cli", *command, *sets], cwd=ROOT, check=True)


def baseline_per_group(cfg, states, groups: int) -> tuple[float, float]:
    """(generation s, scoring s) per group, in this process without Ray."""
    from argen_ray.ard.generator import GenerationRequest, build_generator
    from argen_ray.ard.guidance import ActionSpace
    from argen_ray.ard.rewards import RewardScorer

    backend = build_generator(cfg.generator)
    scorer = RewardScorer(cfg.reward, max(cfg.generator.action_space.steps))
    space = ActionSpace.from_config(cfg.generator)
    rng = np.random.default_rng(0)
    gen_s = score_s = 0.0
    for g in range(-1, groups):  # group -1 warms up (landmark models, caches), like the actors' first call
        i = max(g, 0) % len(states)
        params = [space.decode(np.array([rng.integers(n) for n in space.nvec])) for _ in range(cfg.reward.group_size)]
        requests = [GenerationRequest(image=states.images[i], prompt=states.rows[i]["prompt"], steps=p.steps,
                                      guidance=p.guidance, seed=max(g, 0), emotion=states.rows[i].get("emotion"),
                                      aus=states.rows[i].get("aus") or {}) for p in params]
        t0 = time.perf_counter()
        results = backend.generate(requests)
        t1 = time.perf_counter()
        for r, p in zip(results, params):
            scorer.score(r.frames, states.images[i], p.steps, states.rows[i].get("aus") or {})
        t2 = time.perf_counter()
        if g >= 0:
            gen_s, score_s = gen_s + t1 - t0, score_s + t2 - t1
    return gen_s / groups, score_s / groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4, help="groups (states) per iteration")
    parser.add_argument("--run-dir", type=Path, default=None, help="a run folder (prompts are built when missing)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()

    from argen_ray.ard.training import PolicyTrainer
    from argen_ray.config import load_config

    run_dir = (args.run_dir or Path(tempfile.mkdtemp(prefix="bench-train-"))).resolve()
    demo = ["data.demo.num_identities=5", "data.demo.clips_per_identity=6", "data.demo.min_test_clips=0"]
    ensure_prompts(run_dir, demo)
    overrides = [f"run_dir={run_dir}", *demo, "ray.num_cpus=4", "tracking.enabled=false", "train.eval_states=0",
                 f"train.iterations={args.iterations}", f"train.batch_size={args.batch_size}",
                 f"train.checkpoint_every={args.iterations}", *args.overrides]
    cfg = load_config(ROOT / "configs" / "local.yaml", overrides)
    trainer = PolicyTrainer(cfg)
    try:
        trainer.setup(progress=False)
        base_gen, base_score = baseline_per_group(cfg, trainer.train_states, args.batch_size)
        summary = trainer.run(evaluate=False)
    finally:
        trainer.close()
    history = summary.history[summary.resumed_from:] if summary.resumed_from else summary.history
    # The first iteration also builds RLlib's connectors and warms the actors: report it apart.
    rows = []
    for h in history:
        per_step = h["wall_s"] / args.batch_size
        rows.append((h["iteration"], per_step, h["generate_s"], h["score_s"], per_step - h["generate_s"] - h["score_s"]))
    print(f"\nB={args.batch_size} groups x G={cfg.reward.group_size} candidates per iteration; "
          f"backend {cfg.generator.backend}; {cfg.reward.num_scorers} scorer actors")
    print(f"{'iteration':>9} {'step s':>8} {'generate':>9} {'score':>8} {'other':>8} {'other share':>12}")
    for it, step, gen, score, other in rows:
        print(f"{it:>9} {step:8.3f} {gen:9.3f} {score:8.3f} {other:8.3f} {other / step:12.1%}")
    steady = rows[1:] or rows
    step, gen, score, other = (float(np.mean([r[k] for r in steady])) for k in (1, 2, 3, 4))
    print(f"\nsteady state (iterations {steady[0][0]}-{steady[-1][0]}): {step:.3f} s per environment step = "
          f"generation {gen:.3f} + scoring {score:.3f} + other {other:.3f}")
    print(f"share of wall time that is not generation or scoring: {other / step:.1%}")
    base = base_gen + base_score
    print(f"in-process baseline (no Ray, no RLlib): {base:.3f} s per group (generation {base_gen:.3f}, "
          f"scoring {base_score:.3f}); training on Ray / baseline = {step / base:.2f}x")


if __name__ == "__main__":
    main()
