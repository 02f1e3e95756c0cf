"""`argen-ray generate`: expression videos for every prompts.jsonl row (DESIGN 2.2-2.3).

Steps T and the guidance curve (alpha, beta) come from a trained policy (`--policy`, argmax per
head on the generator's state embeddings) or are fixed for every clip (`--fixed T,alpha,beta` for
a guidance curve, `--fixed T,const:W` for a constant guidance w; TI2V-Zero's face setting is
`--fixed 10,const:9 --set generator.resample=4`). Writes
`<out>/<clip_id>.mp4`, a GIF preview per clip in `<out>/previews/`, and one `manifest.jsonl` line
per clip (prompt, AUs, action, seed, NFE, model, timings, rewards with `--score`). Every file is
written atomically and a manifest line only after its video, so a rerun skips finished clips.
"""
from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import numpy as np

from argen_ray.commands import add_config_arguments, config_from_args
from argen_ray.errors import ArgenError


class GenerateError(ArgenError, ValueError):
    """A `generate` argument is malformed or its inputs do not fit together."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--prompts", default=None,
                        help="prompts.jsonl (default: <run_dir>/prompts/prompts.jsonl, written by `argen-ray prompts`)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--policy", metavar="CHECKPOINT",
                     help="trained policy: policy.pt, a run's policy/ folder or an RLlib checkpoint")
    how.add_argument("--fixed", metavar="T,ALPHA,BETA | T,const:W",
                     help="the same steps and guidance for every clip: a curve (alpha, beta) or a constant w "
                          "(TI2V-Zero: 10,const:9)")
    parser.add_argument("--out", default=None, help="output folder (default: <run_dir>/generated)")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--per-prompt", type=int, default=1, metavar="K",
                       help="videos per prompt, seeds seed..seed+K-1 (default 1)")
    count.add_argument("--augment", action="store_true",
                       help="as many clips per scarce class as recognition.augment asks for the dataset's training "
                            "counts (DESIGN 2.5), spread over the class's prompts; writes augmentation.json")
    parser.add_argument("--score", action="store_true", help="score every clip with the reward suite")


def parse_fixed(text: str) -> tuple[int, float | None, float | None, float | None]:
    """`T,ALPHA,BETA` -> (T, alpha, beta, None); `T,const:W` -> (T, None, None, w)."""
    parts = text.split(",")
    if len(parts) == 2 and parts[1].strip().startswith("const:"):
        try:
            steps, w = int(parts[0]), float(parts[1].strip()[len("const:"):])
        except ValueError:
            raise GenerateError(f"--fixed {text!r}: expected T,const:W such as 10,const:9") from None
        if steps < 1 or not np.isfinite(w) or w < 0:
            raise GenerateError(f"--fixed {text!r}: expected T >= 1 and a constant guidance W >= 0")
        return steps, None, None, w
    try:
        steps, alpha, beta = int(parts[0]), float(parts[1]), float(parts[2])
    except (ValueError, IndexError):
        raise GenerateError(f"--fixed {text!r}: expected T,ALPHA,BETA such as 10,2,1.5 or T,const:W such as "
                            f"10,const:9") from None
    if len(parts) != 3 or steps < 1 or alpha <= 0 or beta <= 0:
        raise GenerateError(f"--fixed {text!r}: expected three values, T >= 1, alpha > 0, beta > 0")
    return steps, alpha, beta, None


def clip_id(prompt_id: str, index: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', str(prompt_id))}_{index}"


def choose_actions(cfg, generator, prompts_path: Path, out: Path, policy_path=None, fixed: str | None = None):
    """(rows, images, per-row (action or None, steps, alpha, beta, guidance curve), policy source)."""
    from argen_ray.ard.guidance import ActionSpace, guidance_curve
    from argen_ray.ard.states import build_state_encoder, load_states

    if fixed:
        from argen_ray.ard.states import read_prompt_rows, resolve_image
        from argen_ray.data.video import read_image

        steps, alpha, beta, constant = parse_fixed(fixed)
        rows = read_prompt_rows(prompts_path)
        images = [read_image(resolve_image(row, prompts_path)) for row in rows]
        space = ActionSpace.from_config(cfg.generator)
        if constant is not None:  # not a curve: no action index
            return rows, images, [(None, steps, None, None, space.constant(steps, constant).guidance)] * len(rows), None
        try:
            action = space.encode(steps, alpha, beta).tolist()
        except ArgenError:
            action = None  # outside the policy's sets: still a valid fixed setting
        curve = guidance_curve(cfg.generator.num_frames - 1, alpha, beta, cfg.generator.w_min, cfg.generator.w_max)
        return rows, images, [(action, steps, alpha, beta, curve)] * len(rows), None
    from argen_ray.ard.policy import load_policy

    policy = load_policy(policy_path)
    if policy.meta.get("state_encoder"):
        cfg.train.state_encoder = policy.meta["state_encoder"]  # embed states as in training
    # The state cache training wrote (keyed by encoder, prompts and images): a run embeds its states once.
    states = load_states(cfg, build_state_encoder(cfg, generator), prompts_path, progress=True)
    space = ActionSpace.from_config(cfg.generator, policy.action_values or None)
    actions, _ = policy.act(states.text_emb, states.image_emb)
    chosen = []
    for action in actions:
        p = space.decode(action)
        chosen.append((action.tolist(), p.steps, p.alpha, p.beta, p.guidance))
    return states.rows, states.images, chosen, str(policy_path)


def augmentation_plan(cfg, dataset=None):
    """Generated clips per scarce class for this config's dataset (training split of data.fold)."""
    from collections import Counter

    from argen_ray.data import open_dataset
    from argen_ray.data.augmentation import augmentation_amounts
    from argen_ray.data.labels import EMOTIONS
    from argen_ray.data.scarce import configured_scarce_classes

    dataset = dataset if dataset is not None else open_dataset(cfg)
    counts = Counter(dataset.training_labels())
    scarce = [EMOTIONS[i] for i in configured_scarce_classes(cfg, dataset)]
    return augmentation_amounts({e: counts.get(i, 0) for i, e in enumerate(EMOTIONS)}, scarce,
                                cfg.recognition.augment.gamma, cfg.recognition.augment.per_class)


def write_augmentation(plan, manifest: Path) -> Path:
    """`augmentation.json` next to the manifest: the plan and what the manifest holds per class."""
    from collections import Counter

    from argen_ray.io import atomic_write_json, read_jsonl

    made = Counter(r.get("emotion") for r in read_jsonl(manifest))
    return atomic_write_json(manifest.parent / "augmentation.json",
                             plan.as_dict() | {"generated": dict(made), "table_generated": plan.table(made)})


def open_generator(cfg):
    """The backend in this process, or the named actor pool (`generator.use_ray`)."""
    if not cfg.generator.use_ray:
        from argen_ray.ard.generator import build_generator

        return build_generator(cfg.generator), 1
    from argen_ray.actors.generator import GeneratorPool
    from argen_ray.runtime import init_ray

    init_ray(cfg)
    return GeneratorPool.from_config(cfg), cfg.generator.num_actors


def manifest_image(row: dict, prompts_path: Path, out: Path, run_dir) -> str:
    """A prompt row's image as the manifest names it: relative to the manifest's folder when it
    lies inside the run folder (so the run folder can move, e.g. out of a job's working dir),
    else absolute."""
    import os

    from argen_ray.ard.states import resolve_image

    image = resolve_image(row, prompts_path).resolve()
    inside = image.is_relative_to(Path(run_dir).resolve())
    return os.path.relpath(image, out.resolve()) if inside else str(image)


def generate_clips(cfg, prompts_path: str | Path | None = None, out: str | Path | None = None, policy=None,
                   fixed: str | None = None, per_prompt: int = 1, score: bool = False,
                   amounts: dict[str, int] | None = None) -> Path:
    """Generate `per_prompt` clips per prompts.jsonl row (or, with `amounts`, amounts[emotion]
    clips per class spread over its rows) with a policy's or fixed actions; returns the manifest
    path. Clip k of a row uses seed row_seed + k. Finished clips of the same request and settings are skipped."""
    from tqdm.auto import tqdm

    from argen_ray.ard.generator import GenerationRequest
    from argen_ray.data.video import write_gif, write_mp4
    from argen_ray.io import JsonlStore, produce_ahead

    if per_prompt < 1:
        raise GenerateError(f"--per-prompt must be at least 1, got {per_prompt}")
    if (policy is None) == (fixed is None):
        raise GenerateError("give exactly one of a policy (--policy) or fixed actions (--fixed)")
    prompts_path = Path(prompts_path or cfg.path("prompts", "prompts.jsonl"))
    out = Path(out or cfg.path("generated"))
    if fixed:
        parse_fixed(fixed)  # malformed inputs fail before any model loads
    if not prompts_path.is_file():
        raise GenerateError(f"{prompts_path} does not exist: run `argen-ray prompts` first (same --config)")
    generator, parallel = open_generator(cfg)
    rows, images, chosen, policy = choose_actions(cfg, generator, prompts_path, out, policy, fixed)
    scorer = None
    if score:
        from argen_ray.ard.rewards import RewardScorer

        scorer = RewardScorer(cfg.reward, max(max(cfg.generator.action_space.steps), *(c[1] for c in chosen)))

    store = JsonlStore(out / "manifest.jsonl", key="clip_id")
    if amounts is not None:
        from argen_ray.data.augmentation import clips_per_row

        counts = clips_per_row([row.get("emotion") for row in rows], amounts)
    else:
        counts = [per_prompt] * len(rows)
    # A clip is reused only when it was made from the same request (prompt, reference image, steps,
    # guidance curve, seed) with the same generator settings; the manifest then lists exactly the
    # clips asked for now, so a changed policy, action or setting never leaves stale clips in it.
    settings = {k: v for k, v in cfg.generator.result_settings().items() if k != "action_space"}  # a clip's own action counts
    todo, wanted = [], {}
    for row, image, (action, steps, alpha, beta, curve), count in zip(rows, images, chosen, counts):
        image_digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        for k in range(count):
            cid = clip_id(row["prompt_id"], k)
            seed = int(row.get("seed", cfg.seed)) + k
            wanted[cid] = cfg.settings_digest(
                generator=settings, prompt=row["prompt"], image=image_digest, steps=steps,
                guidance=np.asarray(curve, float).round(6).tolist(), seed=seed, emotion=row.get("emotion"),
                aus=row.get("aus") or {}, scored=bool(score))
            if cid in store and store.records[cid].get("request_key") == wanted[cid] and (out / f"{cid}.mp4").is_file():
                continue
            todo.append((cid, row, GenerationRequest(
                image=image, prompt=row["prompt"], steps=steps, guidance=curve, seed=seed,
                emotion=row.get("emotion"), aus=row.get("aus") or {}, request_id=cid),
                {"action": action, "steps": steps, "alpha": alpha, "beta": beta}))
    keep = set(wanted) - {cid for cid, *_ in todo}
    stale = [cid for cid in store.records if cid not in keep]
    if stale:
        store.retain(lambda r: r["clip_id"] in keep)
        print(f"[argen-ray] {len(stale)} clips in {out / 'manifest.jsonl'} were made from other requests or "
              f"settings (or are no longer asked for): made again or left out")
    if keep:
        print(f"[argen-ray] {len(keep)} clips already in {out / 'manifest.jsonl'}: skipped")
    chunk = cfg.generator.max_batch * parallel
    batches = [todo[start:start + chunk] for start in range(0, len(todo), chunk)]
    with tqdm(total=len(todo), desc="generating", unit="clip") as bar:
        # The next chunk generates while this one is written and scored.
        for batch, results in produce_ahead(batches, lambda b: generator.generate([r for _, _, r, _ in b])):
            for (cid, row, request, chosen_action), result in zip(batch, results):
                write_mp4(out / f"{cid}.mp4", result.frames, fps=cfg.generator.fps, lossless=cfg.generator.mp4_lossless)
                write_gif(out / "previews" / f"{cid}.gif", result.frames, fps=cfg.generator.fps)
                record = {"clip_id": cid, "request_key": wanted[cid], "video": f"{cid}.mp4", "preview": f"previews/{cid}.gif",
                          "prompt_id": row["prompt_id"], "prompt": row["prompt"], "emotion": row.get("emotion"),
                          "aus": row.get("aus") or {}, "image": manifest_image(row, prompts_path, out, cfg.run_dir),
                          "identity": row.get("identity_id"),
                          "subject": row.get("subject"),
                          **chosen_action, "guidance": np.asarray(request.guidance, float).round(4).tolist(),
                          "seed": request.seed, "num_frames": int(len(result.frames)), "fps": cfg.generator.fps,
                          "nfe": int(result.nfe), "backend": cfg.generator.backend, "model_id": result.model_id,
                          "policy": policy, "timings": {k: round(v, 4) for k, v in result.timings.items()}}
                if scorer is not None:
                    record["rewards"] = scorer.score(result.frames, request.image, request.steps, request.aus)
                store.append(record)
                bar.update(1)
    if hasattr(generator, "shutdown"):
        generator.shutdown()  # the actor pool releases its placement group for the next stage
    nfe = [r["nfe"] for r in store]
    print(f"[argen-ray] {len(store)} clips in {out} (manifest.jsonl, previews/); "
          f"mean NFE per video {np.mean(nfe) if nfe else 0:.0f}")
    return store.path


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, preflight=("generate",))
    plan = augmentation_plan(cfg) if args.augment else None
    manifest = generate_clips(cfg, args.prompts, args.out, policy=args.policy, fixed=args.fixed,
                              per_prompt=args.per_prompt, score=args.score, amounts=plan and plan.amounts)
    if plan is not None:
        write_augmentation(plan, manifest)
    return 0
