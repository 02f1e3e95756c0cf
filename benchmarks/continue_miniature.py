"""Continue a fitted miniature under changed `generator.fit` settings: the experiments of
docs/generator.md that try a training change cheaply (AU-adapted prompts, epsilon prediction)
before paying for a whole fit.

The model's VAE is kept; its UNet and text encoder become both the live and the EMA weights (fresh
AdamW) of a `MiniatureFit` whose work folder is seeded at the end of the model's own UNet phase,
so `--steps` more UNet steps run through the fit command's own code (progress, checkpoints,
resume on rerun). The result is an experiment, not a shippable model: a shipped model comes
from `argen-ray fit-generator` with its recorded config.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/continue_miniature.py --out /tmp/mini-eps \\
        --steps 3000 --set prediction=epsilon --threads 2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from argen_ray.ard.miniature import CHECKPOINT, FIT_RECORD, MiniatureFit
from argen_ray.config.generator import FitConfig
from argen_ray.io import atomic_write_json

ASSETS = Path(__file__).resolve().parents[1] / "argen_ray" / "assets" / "miniature"


def seed_work_folder(run: MiniatureFit, model: Path, done: int, fresh_text: bool = False) -> None:
    """A checkpoint in `run`'s work folder at the end of `model`'s UNet phase (`done` steps),
    holding its weights (with `fresh_text`, the text encoder the changed settings build instead)."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextModel

    vae = AutoencoderKL.from_pretrained(model / "vae")
    run.pipe.vae.load_state_dict(vae.state_dict())
    run.pipe.vae.register_to_config(scaling_factor=vae.config.scaling_factor)
    sources = [(run.pipe.unet, run.ema_unet, UNet3DConditionModel.from_pretrained(model / "unet"))]
    if not fresh_text:
        sources.append((run.pipe.text_encoder, run.ema_text, CLIPTextModel.from_pretrained(model / "text_encoder")))
    for live, ema, source in sources:
        live.load_state_dict(source.state_dict())
        ema.load_state_dict(source.state_dict())
    run.step = run.fit.vae_steps + done
    run.losses = {"vae": [float("nan")] * run.fit.vae_steps, "unet": [float("nan")] * done, "decoder": []}
    run.save_checkpoint()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ASSETS, help="fitted model folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, required=True, help="where the continued model is saved")
    parser.add_argument("--steps", type=int, required=True, help="UNet steps beyond the model's own")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a generator.fit setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh-text", action="store_true",
                        help="start from a newly built text encoder (e.g. with --set text_token_std=1) instead of the model's")
    args = parser.parse_args()
    recorded = json.loads((args.model / "fit.json").read_text())["config"]
    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in FitConfig.model_fields:
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY a generator.fit setting")
        changes[key] = yaml.safe_load(value)
    fit = FitConfig.model_validate({**recorded, **changes, "out": str(args.out), "threads": args.threads,
                                    "unet_steps": recorded["unet_steps"] + args.steps, "sample_every": 10 ** 9})
    run = MiniatureFit(fit, out_dir=args.out)
    if not (run.work_dir / CHECKPOINT).is_file():
        seed_work_folder(run, args.model, recorded["unet_steps"], args.fresh_text)
    record = run.run()  # resumes from the work folder's checkpoint, the seeded one included
    # The record names what made the model: this continuation of `--model`, not a whole fit.
    record.update(command="benchmarks/continue_miniature.py " + " ".join(
        [f"--steps {args.steps}", *(f"--set {item}" for item in args.set), *(["--fresh-text"] if args.fresh_text else [])]),
        continued_from=str(args.model))
    atomic_write_json(args.out / FIT_RECORD, record)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
