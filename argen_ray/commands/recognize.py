"""`argen-ray recognize`: recognition baselines on the original vs the augmented training set."""
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


def _table(result: dict):
    from rich.table import Table

    scarce = result.get("scarce") or []
    table = Table(title=f"recognition ({result['protocol']}; mean over {len(result['per_fold'])} fold(s))")
    for col in ("model", "variant", "WAR", "UAR", *(f"AR-{c[:2].upper()}" for c in scarce)):
        table.add_column(col, justify="left" if col in ("model", "variant") else "right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, variants in result["mean"].items():
        for variant, s in variants.items():
            table.add_row(name, variant, fmt(s["war"]), fmt(s["uar"]), *(fmt(s["ar"].get(c)) for c in scarce))
    return table


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from argen_ray.recognition.protocols import run_protocol

    cfg = config_from_args(args)
    manifest = _manifest(args, Path(cfg.run_dir))
    console = Console()
    console.print(f"[argen-ray] recognition on {cfg.data.kind}; generated clips: {manifest or 'none (original only)'}")
    result = run_protocol(cfg, manifest, progress=not args.no_progress)
    console.print(_table(result))
    console.print(f"[argen-ray] results: {cfg.path('recognition', 'results.json')}; plots in "
                  f"{cfg.path('recognition', 'plots')}")
    return 0
