"""`argen-ray fit-generator`: fit the miniature text-to-video model (argen_ray/ard/miniature.py).

Settings come from the config's `generator.fit` section (flags override them). The model is
saved with `save_pretrained` in the ModelScope folder layout to `generator.fit.out` (default
`$ARGEN_RAY_CACHE/miniature-t2v-vN`, N = the shipped version, where `generator.model: miniature`
finds it); checkpoints and sample GIFs go to `<out>.work/`, and a rerun resumes from the last
checkpoint.
"""
from __future__ import annotations

import argparse

from argen_ray.ard.tiny_models import MINIATURE_MODEL_NAME
from argen_ray.commands import add_config_arguments, config_from_args

# flag -> FitConfig field
_FLAGS = {"out": "out", "seed": "seed", "vae_steps": "vae_steps", "unet_steps": "unet_steps",
          "identities": "num_identities", "vae_identities": "vae_identities", "threads": "threads"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", help=f"model folder (default: generator.fit.out, else $ARGEN_RAY_CACHE/{MINIATURE_MODEL_NAME})")
    parser.add_argument("--work-dir", help="checkpoints and sample GIFs (default: <out>.work)")
    parser.add_argument("--seed", type=int, help="weights and sampling seed (default: generator.fit.seed)")
    parser.add_argument("--vae-steps", type=int, help="VAE optimisation steps (default: generator.fit.vae_steps)")
    parser.add_argument("--unet-steps", type=int, help="UNet optimisation steps (default: generator.fit.unet_steps)")
    parser.add_argument("--identities", type=int, help="rendered training identities (default: generator.fit.num_identities)")
    parser.add_argument("--vae-identities", type=int,
                        help="rendered people the VAE learns from (default: generator.fit.vae_identities)")
    parser.add_argument("--threads", type=int, help="torch threads (default: generator.fit.threads)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from argen_ray.ard.miniature import MiniatureFit

    args.overrides = list(args.overrides) + [f"generator.fit.{field}={getattr(args, flag)}"
                                             for flag, field in _FLAGS.items() if getattr(args, flag) is not None]
    cfg = config_from_args(args, save=False)
    fitter = MiniatureFit(cfg.generator.fit, work_dir=args.work_dir, tracking=cfg, progress=not args.no_progress)
    fit = cfg.generator.fit
    print(f"[argen-ray] fit miniature: {fit.size}x{fit.size} px, {fit.window}-frame windows, UNet {fit.channels}, "
          f"{fit.vae_steps} VAE + {fit.unet_steps} UNet steps -> {fitter.out_dir} (checkpoints: {fitter.work_dir})")
    record = fitter.run()
    print(f"[argen-ray] done in {record['seconds']:.0f} s: VAE loss {record['final_vae_loss']}, UNet loss "
          f"{record['final_unet_loss']}; model folder {fitter.out_dir}")
    return 0
