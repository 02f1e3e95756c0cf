"""`argen-ray prompts`: ASI stage — identity frames -> AU retrieval -> VLM -> filter -> prompts.jsonl."""
from __future__ import annotations

import argparse

from argen_ray.commands import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--ray", action="store_true",
                        help="run the VLM in a VLMActor on Ray (default: asi.vlm.use_ray of the config)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_prompt_stage(cfg, use_ray: bool = False, progress: bool = True, dataset=None) -> dict:
    """The ASI stage for a config: prompts.jsonl under <run_dir>/prompts (resumes); its summary."""
    from argen_ray.asi.knowledge import load_knowledge_base
    from argen_ray.asi.pipeline import PromptStage
    from argen_ray.asi.retrieval import AURetriever, load_embedder
    from argen_ray.asi.vlm import build_vlm
    from argen_ray.data import open_dataset

    dataset = dataset if dataset is not None else open_dataset(cfg)
    kb = load_knowledge_base(cfg.asi.knowledge_base)
    retriever = AURetriever(kb, load_embedder(cfg.asi.embedder), cfg.asi.top_k, cfg.asi.retrieval_temperature)
    stage = PromptStage(cfg, kb, retriever, progress=progress)
    if use_ray or cfg.asi.vlm.use_ray:
        import ray

        from argen_ray.actors.vlm import actor_generate, start_vlm_actor
        from argen_ray.runtime import init_ray

        init_ray(cfg)
        actor = start_vlm_actor(cfg)
        summary = stage.run(dataset, actor_generate(actor))
        info = ray.get(actor.info.remote())
        print(f"[argen-ray] VLMActor {info['backend']} ({info['model']}, pid {info['pid']}) served "
              f"{info['served']} requests")
        ray.kill(actor)  # frees its GPU for the generator actors of the next stage
    else:
        summary = stage.run(dataset, build_vlm(cfg.asi.vlm, seed=cfg.seed).generate)
    print(f"[argen-ray] prompts: {summary['prompts']} in {summary['prompts_file']} "
          f"({summary['identities']} identities x {', '.join(summary['emotions'])}; backend {summary['backend']})")
    print(f"[argen-ray] hallucination rate: {summary['hallucination_rate']:.1%} "
          f"({summary['dropped']} of {summary['asserted']} asserted actions dropped; "
          f"{summary['fallbacks']} prompts fell back to the template)")
    return summary


def run(args: argparse.Namespace) -> int:
    run_prompt_stage(config_from_args(args, preflight=("prompts",)), use_ray=args.ray, progress=not args.no_progress)
    return 0
