"""`argen-ray` command line: a registry of stage commands, each in argen_ray.commands.<module>.

Command modules are imported only when their command runs, so `argen-ray --help` is instant.
A command module sets `RESUMABLE = False` when a rerun after Ctrl-C starts over (default True:
the message on Ctrl-C then says that rerunning the same command resumes).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from argen_ray.errors import ArgenError

# name -> (module under argen_ray.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("demo_data", "write the embedded long-tailed demo dataset (DFEW layout)"),
    "data": ("data_summary", "summarise a dataset: counts, skipped items, scarce-class analysis"),
    "prompts": ("prompts", "ASI: identity frames -> AU retrieval -> VLM -> prompts.jsonl"),
    "generate": ("generate", "ARD: generate expression videos from prompts.jsonl"),
    "fit-generator": ("fit_generator", "fit the miniature text-to-video model for the ti2v backend on CPU"),
    "train": ("train", "ARD: train the step/guidance policy with RLlib on Ray"),
    "tune": ("tune", "Tune sweep over reward weights or group settings (tune_configs/*.yaml)"),
    "serve": ("serve", "Ray Serve app: policy and online generation over HTTP"),
    "recognize": ("recognize", "train recognition baselines on original vs augmented data"),
    "run": ("run", "the end-to-end job: data -> prompts -> train -> generate -> recognition -> report"),
    "plan": ("plan", "the compute plan of a config: videos, NFE, FLOPs, GPU-hours, GPU memory per actor"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argen-ray",
        description="ARGen on Ray: fix the long tail of dynamic facial expression datasets.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            mod = importlib.import_module(f"argen_ray.commands.{module}")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run, _resumable=getattr(mod, "RESUMABLE", True))
    return parser


def interrupt_message(resumable: bool) -> str:
    return "interrupted; rerun the same command to resume" if resumable else "stopped"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    try:
        code = args._run(args)
    except ArgenError as exc:
        print(f"argen-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"argen-ray {args.command}: {interrupt_message(getattr(args, '_resumable', True))}", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
