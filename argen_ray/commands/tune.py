"""`argen-ray tune FILE`: a Tune sweep from tune_configs/ (reward weights, group rule).

Every trial trains a policy; MLflow's Tune callback records one run per trial; the best
trial's overrides, metrics and policy land in `<run_dir>/tune/<name>/best.json` and
`best_policy.pt`.
"""
from __future__ import annotations

import argparse

from argen_ray.commands import add_config_arguments, config_from_args

# An interrupted sweep is not restored: a rerun starts new trials (cli.py's Ctrl-C message).
RESUMABLE = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="sweep definition, e.g. tune_configs/reward_weights.yaml")
    add_config_arguments(parser)
    parser.add_argument("--prompts", default=None,
                        help="prompts.jsonl to train on (default: <run_dir>/prompts/prompts.jsonl)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from argen_ray.ard.tuning import load_sweep, run_sweep

    spec = load_sweep(args.file)
    cfg = config_from_args(args)
    config_path = args.config if args.config and Path(args.config).is_file() else None
    result = run_sweep(cfg, spec, config_path, args.overrides, args.prompts)
    table = Table(title=f"sweep {spec.name}: {spec.metric} ({spec.mode})")
    shown = {spec.metric: spec.metric, "eval_policy_score": "own score", "eval_policy_steps": "T",
             "eval_policy_nfe": "NFE"}
    for key in spec.grid:
        table.add_column(key.split(".")[-1], justify="right")
    for label in shown.values():
        table.add_column(label, justify="right")
    for trial in result.trials:
        m = trial["metrics"]
        table.add_row(*(str(trial["params"][k]) for k in spec.grid),
                      *(f"{m[n]:.4f}" if n in m else (trial["error"] or "-")[:40] for n in shown))
    console = Console()
    console.print(table)
    console.print(f"[bold]best[/]: {result.best_params}  {spec.metric}={result.best_metrics[spec.metric]:.4f}")
    console.print(f"best checkpoint: {result.best_checkpoint}\nsummary: {result.summary_path}")
    return 0
