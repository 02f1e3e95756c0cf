"""`argen-ray train`: train ARD's step/guidance policy with RLlib on Ray (DESIGN 2.3).

Connects to RAY_ADDRESS (e.g. under `ray job submit`) or starts a local Ray; rerunning the
same command resumes from the latest checkpoint in `<run_dir>/policy/checkpoints/`.
"""
from __future__ import annotations

import argparse

from argen_ray.commands import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--prompts", default=None,
                        help="prompts.jsonl to train on (default: <run_dir>/prompts/prompts.jsonl)")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the held-out evaluation of the argmax policy (against random actions, the best fixed action and the per-state best)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from argen_ray.ard.training import PolicyTrainer, tracking_uri

    cfg = config_from_args(args, preflight=("train",))
    trainer = PolicyTrainer(cfg, args.prompts)
    try:
        summary = trainer.run(evaluate=not args.no_eval)
    finally:
        trainer.close()
    console = Console()
    resumed = f" (resumed after iteration {summary.resumed_from})" if summary.resumed_from else ""
    console.print(f"[bold]trained[/] {summary.iterations} iterations{resumed}")
    console.print(f"checkpoint: {summary.checkpoint}\npolicy:     {summary.policy_path}")
    if summary.eval is not None:
        table = Table(title=f"held-out evaluation ({summary.eval.num_states} states)")
        columns = {"score": "score", "r_t": "R_t", "r_q": "R_q", "r_f": "R_f", "r_e": "R_e", "r_c": "R_c",
                   "steps": "T", "alpha": "alpha", "beta": "beta", "nfe": "NFE"}
        table.add_column("policy")
        for label in columns.values():
            table.add_column(label, justify="right")
        for label, values in summary.eval.rows().items():
            table.add_row(label, *(f"{values[k]:.3f}" if k in values else "-" for k in columns))
        console.print(table)
        if summary.eval.oracle is not None:
            from argen_ray.ard.evaluation import REFERENCE_ROWS

            fixed = summary.eval.best_fixed
            console.print(f"every one of the {summary.eval.num_actions} actions scored on every held-out state x "
                          f"{summary.eval.num_seeds} seeds: policy = {summary.eval.oracle_fraction:.1%} of the "
                          f"per-state best on the seed-mean (regret {summary.eval.regret:.4f}); best fixed action "
                          f"T={fixed['steps']:g}, alpha={fixed['alpha']:g}, beta={fixed['beta']:g}")
            titles = {label: title for label, _, title in REFERENCE_ROWS}
            for label, (gap, se) in summary.eval.gaps().items():
                console.print(f"policy - {titles[label]}: {gap:+.4f} (standard error over the states {se:.4f})")
            console.print("bar: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}"
                                              for name, ok in summary.eval.bars().items()))
        console.print(f"objective ({cfg.train.objective} - train.nfe_cost x NFE): {summary.eval.objective:.4f}")
    if summary.mlflow_run_id:
        console.print(f"MLflow run {summary.mlflow_run_id} at {tracking_uri(cfg)}")
    return 0
