"""`argen-ray data`: summarise a dataset: clips per class and split, skipped items and why,
and the scarce-class analysis. Writes `<run_dir>/data/summary.json` and `class_counts.png`."""
from __future__ import annotations

import argparse
from pathlib import Path

from argen_ray.commands import add_config_arguments, config_from_args

DATA_KINDS = ("demo", "dfew", "ferv39k", "ckplus", "dferclip", "manifest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--kind", choices=DATA_KINDS, help="dataset kind (overrides data.kind)")
    parser.add_argument("--root", help="dataset directory, or the CSV for --kind manifest (overrides data.root)")
    parser.add_argument("--fold", type=int, help="DFEW fold 1..5 (overrides data.fold)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="adapter option, e.g. --option source=original or --option verify=full (repeatable)")
    parser.add_argument("--max-skipped", type=int, default=20,
                        help="skipped items to list on screen (all are in summary.json; default 20)")


def _overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.kind:
        out.append(f"data.kind={args.kind}")
    if args.root:
        out.append("data.root='" + args.root.replace("'", "''") + "'")  # a YAML string, whatever it holds
    if args.fold is not None:
        out.append(f"data.fold={args.fold}")
    out += [f"data.options.{opt}" for opt in args.option]
    return out


def summarize_dataset(cfg, dataset, max_skipped: int = 20) -> Path:
    """Print the dataset summary and scarce analysis; write summary.json and class_counts.png
    under <run_dir>/data; returns that folder."""
    from rich.console import Console

    from argen_ray.data import scarce_analysis
    from argen_ray.data.scarce import configured_scarce_classes, scarce_table

    console = Console()
    console.print(dataset.summary_table())
    if dataset.skipped:
        console.print(f"[bold]skipped {len(dataset.skipped)} item(s):[/bold]")
        for report in dataset.skipped[: max(max_skipped, 0)]:
            console.print(f"  {report}", markup=False, highlight=False, soft_wrap=True)
        if len(dataset.skipped) > max_skipped:
            console.print(f"  ... and {len(dataset.skipped) - max_skipped} more (see summary.json)")
    d = cfg.data
    rows = scarce_analysis(dataset.training_labels(), d.scarce_rho, d.baseline_recall, d.recall_threshold)
    console.print(scarce_table(rows, d.recall_threshold, override=d.scarce_classes))
    scarce = configured_scarce_classes(cfg, dataset)
    out = cfg.path("data")
    _write_summary(out / "summary.json", dataset, rows, scarce)
    _plot_class_counts(out / "class_counts.png", dataset, rows, scarce)
    print(f"[argen-ray] summary and class-count plot in {out}")
    return out


def run(args: argparse.Namespace) -> int:
    from argen_ray.data import open_dataset

    args.overrides = list(args.overrides) + _overrides(args)
    cfg = config_from_args(args)
    summarize_dataset(cfg, open_dataset(cfg), args.max_skipped)
    return 0


def _write_summary(path: Path, dataset, rows, scarce: list[int]) -> None:
    from dataclasses import asdict

    from argen_ray.data import EMOTIONS
    from argen_ray.io import atomic_write_json

    atomic_write_json(path, {
        "kind": dataset.kind, "root": str(dataset.root), "clips": len(dataset.records),
        "class_counts": {s: dict(zip(EMOTIONS, dataset.class_counts(s))) for s in dataset.split_names},
        "skipped_by_reason": dataset.skip_counts(),
        "skipped": [{"path": str(s.path), "line": s.line, "reason": s.reason, "detail": s.detail}
                    for s in dataset.skipped],
        "scarce_analysis": [asdict(r) for r in rows],
        "scarce_classes": [EMOTIONS[i] for i in scarce],
    })


def _plot_class_counts(path: Path, dataset, rows, scarce: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from argen_ray.data import EMOTIONS
    from argen_ray.io import atomic_path

    splits = dataset.split_names
    x = np.arange(len(EMOTIONS))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, split in enumerate(splits):
        ax.bar(x + (k - (len(splits) - 1) / 2) * width, dataset.class_counts(split), width, label=split)
    ax.axhline(rows[0].threshold, color="k", linestyle="--", linewidth=1, label="train N/7·ρ")
    ax.set_xticks(x, [f"{name}{' *' if i in scarce else ''}" for i, name in enumerate(EMOTIONS)])
    ax.set_ylabel("clips")
    ax.set_title(f"{dataset.kind}: clips per class (* scarce)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
