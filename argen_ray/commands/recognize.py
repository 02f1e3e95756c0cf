"""`argen-ray recognize`: recognition baselines on the original vs the augmented training set, as a
study over (fold, seed) pairs (DESIGN 2.5), with the generated clips' recognizability."""
from __future__ import annotations

import argparse
from pathlib import Path

from argen_ray.commands import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--generated", metavar="DIR", default=None,
                        help="generated clips: a folder holding manifest.jsonl, or the manifest itself "
                             "(default: <run_dir>/generated when it has a manifest; otherwise only the "
                             "original training set is used)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _manifest(args: argparse.Namespace, run_dir: Path) -> Path | None:
    from argen_ray.recognition.models import RecognitionError

    if args.generated is not None:
        path = Path(args.generated)
        if not path.exists():
            raise RecognitionError(f"--generated {path} does not exist")
        return path
    default = run_dir / "generated" / "manifest.jsonl"
    return default if default.is_file() else None


def _mean_table(result: dict):
    """Zero-shot results (no study: nothing is trained)."""
    from rich.table import Table

    table = Table(title=f"recognition ({result['protocol']})")
    for col in ("model", "variant", "WAR", "UAR"):
        table.add_column(col, justify="left" if col in ("model", "variant") else "right")
    for name, variants in result["mean"].items():
        for variant, s in variants.items():
            table.add_row(name, variant, f"{s['war']:.3f}", f"{s['uar']:.3f}")
    return table


def study_tables(result: dict) -> list:
    """Per model: mean ± std over pairs per variant, the paired Δ with its 95 % bootstrap CI, the
    verdict line; and the generated clips' recognizability per class."""
    from rich.table import Table

    from argen_ray.recognition.study import format_delta, format_mean_std

    scarce = result.get("scarce") or []
    keys = ["war", "uar", "scarce_ar", *(f"ar_{c}" for c in scarce)]
    heads = ["WAR", "UAR", "scarce AR", *(f"AR-{c[:2].upper()}" for c in scarce)]
    out = []
    for name, entry in result["study"].items():
        n = len(entry["pairs"])
        table = Table(title=f"{entry['display_name']}: {result['protocol']}, {n} (fold, seed) pair(s); "
                            f"mean ± std over pairs, Δ = augmented − original [95 % bootstrap CI]")
        for col in ("variant", *heads):
            table.add_column(col, justify="left" if col == "variant" else "right")
        for variant, s in entry["variants"].items():
            table.add_row(variant, *(format_mean_std(s[k]) for k in keys))
        if "delta" in entry:
            table.add_row("Δ", *(format_delta(entry["delta"][k]) for k in keys))
        out.append(table)
        if "verdict" in entry:
            out.append(f"[bold]{name}: {entry['verdict']['text']}[/]")
        rz = entry.get("recognizability")
        if rz:
            rt = Table(title=f"recognizability of the generated clips by the original-only {entry['display_name']} "
                             f"(pooled over {rz['pairs']} pair(s))")
            for col in ("class", "generated clips", "recognized", "recall", "recall on real test clips",
                        "dropped by filter"):
                rt.add_column(col, justify="left" if col == "class" else "right")
            for c, r in rz["per_class"].items():
                real = "-" if r["real_test_recall"] is None else f"{r['real_test_recall']:.3f}"
                rt.add_row(c, str(r["clips"]), str(r["recognized"]), f"{r['recall']:.3f}", real,
                           str(r["filter_dropped"]) if result.get("filter_unrecognized") else "filter off")
            out.append(rt)
    return out


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from argen_ray.recognition.protocols import run_protocol

    cfg = config_from_args(args)
    manifest = _manifest(args, Path(cfg.run_dir))
    console = Console()
    console.print(f"[argen-ray] recognition on {cfg.data.kind}; generated clips: {manifest or 'none (original only)'}")
    result = run_protocol(cfg, manifest, progress=not args.no_progress)
    for part in study_tables(result) if "study" in result else [_mean_table(result)]:
        console.print(part)
    console.print(f"[argen-ray] results: {cfg.path('recognition', 'results.json')}; plots in "
                  f"{cfg.path('recognition', 'plots')}")
    return 0
