"""`argen-ray run`: the end-to-end job (DESIGN 2): data -> prompts -> policy training ->
generation of scarce-class clips -> recognition original vs augmented -> generation metrics ->
HTML report, under one MLflow parent run.

Each stage writes its outputs under the run directory and is recorded in `<run_dir>/run.json`
when it finishes, with a fingerprint of the settings it read; rerunning the command skips
finished stages whose settings are unchanged (and every stage resumes its own partial work where
its inputs are unchanged), redoes the first stage whose settings changed and the ones after it, and
`--from STAGE` redoes a stage and the ones after it (`--from train` trains the policy anew).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from argen_ray.commands import add_config_arguments, config_from_args
from argen_ray.errors import ArgenError

STAGES = ("data", "prompts", "train", "generate", "recognition", "metrics", "report")
# The config sections each stage reads beyond the earlier stages' (placement fields aside:
# `Section.result_settings`). The generation amounts come from `recognition.augment`.
STAGE_SECTIONS = {"data": ("seed", "data"), "prompts": ("asi",), "train": ("generator", "reward", "train"),
                  "generate": ("recognition",), "recognition": (), "metrics": (), "report": ()}
# Stages that leave a core idle for the background I3D features of the real clips (and the data
# stage's dynamics, once the dataset exists).
PREFETCH_DURING = ("prompts", "train", "generate", "recognition")


class RunError(ArgenError, RuntimeError):
    """The end-to-end run cannot go on (a stage's input is missing)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--from", dest="from_stage", choices=STAGES, default=None,
                        help="redo this stage and every later one (default: the stages not finished yet or whose settings changed)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def stage_fingerprints(cfg) -> dict[str, str]:
    """{stage: digest of the settings it and every earlier stage read}: a changed setting changes
    the fingerprint of the stage that reads it and of every later one."""
    out, sections = {}, []
    for stage in STAGES:
        sections += STAGE_SECTIONS[stage]
        out[stage] = cfg.settings_digest(*sections)
    return out


class EndToEndRun:
    """The stages of one run over one config; `state` (run.json) records the finished ones."""

    def __init__(self, cfg, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.fresh_training = False
        self.state_path = cfg.path("run.json")
        self.state = self._read_state()
        self._dataset = None
        self._prefetch = None  # I3DPrefetch of the real clips the metrics score (speed only)

    def _read_state(self) -> dict:
        import json

        if not self.state_path.is_file():
            return {"stages": {}}
        try:
            return json.loads(self.state_path.read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.state_path}: unreadable ({exc.msg}); delete it to rerun every stage") from None

    def _save_state(self) -> None:
        from argen_ray.io import atomic_write_json

        atomic_write_json(self.state_path, self.state)

    @property
    def dataset(self):
        if self._dataset is None:
            from argen_ray.data import open_dataset

            self._dataset = open_dataset(self.cfg)
        return self._dataset

    def result(self, stage: str) -> dict:
        return self.state["stages"][stage]["result"]

    def stop_prefetch(self) -> None:
        """Stop the background I3D features (a stage is about to read their cache)."""
        if self._prefetch is not None:
            self._prefetch.stop()

    def start_prefetch(self, extra=()) -> None:
        """Start the background I3D features of the real clips that the validity and generation
        metrics score, once the prompts fix the classes and subjects (metrics/prefetch.py), and of
        the `extra` clips (the generated ones)."""
        prompts = self.cfg.path("prompts", "prompts.jsonl")
        if self._prefetch is None or (not self._prefetch.with_subjects and prompts.is_file()):
            from argen_ray.commands.generate import augmentation_plan
            from argen_ray.data.labels import EMOTIONS
            from argen_ray.io import read_jsonl
            from argen_ray.metrics.prefetch import I3DPrefetch, real_clips_for_metrics
            from argen_ray.metrics.validity import I3D_CACHE

            amounts = augmentation_plan(self.cfg, self.dataset).amounts
            # Before the prompts exist (data, prompts stages) only the generated classes' clips are known.
            subjects = {r.get("subject") for r in read_jsonl(prompts)
                        if amounts.get(r.get("emotion"), 0) > 0} if prompts.is_file() else set()
            clips = real_clips_for_metrics(self.dataset, [EMOTIONS.index(c) for c, n in amounts.items() if n > 0],
                                           subjects - {None})
            sources = dict.fromkeys(str(r.source) for part in clips.values() for r in part)
            if self._prefetch is not None:
                self._prefetch.stop()
            self._prefetch = I3DPrefetch(sources, self.cfg.path("metrics", I3D_CACHE))
            self._prefetch.with_subjects = prompts.is_file()
        added = [s for s in dict.fromkeys(str(s) for s in extra) if s not in self._prefetch.sources]
        if added:
            self._prefetch.stop()  # its job file lists the old clips
            self._prefetch.sources += added
        self._prefetch.start()

    # -- the stages, in order; each returns a small JSON-able result ------------------------------
    def stage_data(self) -> dict:
        from argen_ray.commands.data_summary import summarize_dataset

        from argen_ray.data.dynamics import codec_noise, measure_dataset_dynamics, write_dynamics

        out = summarize_dataset(self.cfg, self.dataset)
        self.start_prefetch()  # the dataset exists: the rest of this stage is one thread
        # The real training clips' timing, head motion and noise, which the warp generator draws from.
        measured = measure_dataset_dynamics(self.dataset, progress=self.progress)
        # What writing generated clips (mp4, generator.mp4_lossless) adds to the noise they measure.
        measured["codec"] = codec_noise(self.dataset.split("train") or self.dataset.records,
                                        self.cfg.generator.mp4_lossless)
        dynamics = write_dynamics(measured, self.cfg.generator.warp.dynamics)
        print(f"[argen-ray] clip dynamics of {measured['measured']} training clips ({len(measured['skipped'])} "
              f"without a face in frame 0) -> {dynamics}")
        # What the scarce classes' real training clips show beyond the movement (wrinkles, mouth interior).
        from argen_ray.ard.warp_appearance import measure_dataset_appearance, write_appearance
        from argen_ray.data.labels import EMOTIONS
        from argen_ray.data.scarce import configured_scarce_classes

        scarce = [EMOTIONS[i] for i in configured_scarce_classes(self.cfg, self.dataset)]
        appearance = write_appearance(measure_dataset_appearance(self.dataset, progress=self.progress, classes=scarce),
                                      self.cfg.generator.warp.appearance)
        return {"summary": str(out / "summary.json"), "plot": str(out / "class_counts.png"),
                "dynamics": str(dynamics), "appearance": str(appearance)}

    def stage_prompts(self) -> dict:
        from argen_ray.commands.prompts import run_prompt_stage

        return run_prompt_stage(self.cfg, progress=self.progress, dataset=self.dataset)

    def stage_train(self) -> dict:
        from argen_ray.ard.training import PolicyTrainer

        trainer = PolicyTrainer(self.cfg, fresh=self.fresh_training)
        try:
            summary = trainer.run(evaluate=True)
        finally:
            trainer.close()
        return {"iterations": summary.iterations, "policy": str(summary.policy_path),
                "checkpoint": str(summary.checkpoint), "mlflow_run_id": summary.mlflow_run_id,
                "eval": summary.eval.to_json() if summary.eval else None,
                "reward_curve": str(self.cfg.path("policy", "reward_curve.png")),
                "final": summary.history[-1] if summary.history else None}

    def stage_generate(self) -> dict:
        from argen_ray.commands.generate import augmentation_plan, generate_clips, write_augmentation
        from argen_ray.metrics.validity import validity_lines, validity_metrics
        from argen_ray.recognition.clips import read_generated_clips

        plan = augmentation_plan(self.cfg, self.dataset)
        manifest = generate_clips(self.cfg, policy=self.result("train")["policy"], amounts=plan.amounts)
        augmentation = write_augmentation(plan, manifest)
        generated = read_generated_clips(manifest)
        # The generated clips' I3D features are computed in the background while the validity
        # dynamics (one thread) run; validity stops that before its FVD reads the cache and fills
        # in what is missing itself.
        self.start_prefetch(extra=[g.source for g in generated])
        validity = validity_metrics(self.cfg, self.dataset, generated, progress=self.progress,
                                    before_fvd=self.stop_prefetch)
        for line in validity_lines(validity):
            print(f"[argen-ray] validity: {line}")
        return {"manifest": str(manifest), "augmentation": str(augmentation),
                "validity": str(self.cfg.path("metrics", "validity.json"))}

    def stage_recognition(self) -> dict:
        from argen_ray.recognition.protocols import run_protocol

        from rich.console import Console

        from argen_ray.commands.recognize import study_tables

        result = run_protocol(self.cfg, self.result("generate")["manifest"], progress=self.progress)
        for part in study_tables(result):
            Console().print(part)
        return {"results": str(self.cfg.path("recognition", "results.json")), "pairs": len(result["pairs"]),
                "verdict": {name: e.get("verdict", {}).get("text") for name, e in result["study"].items()},
                "recognizability": str(self.cfg.path("metrics", "recognizability.json"))}

    def stage_metrics(self) -> dict:
        from argen_ray.metrics.generation import generation_metrics
        from argen_ray.recognition.clips import read_generated_clips

        self.stop_prefetch()
        generated = read_generated_clips(self.result("generate")["manifest"])
        generation_metrics(self.cfg, self.dataset, generated, progress=self.progress)
        return {"results": str(self.cfg.path("metrics", "generation.json"))}

    def stage_report(self) -> dict:
        from argen_ray.report import write_run_report

        return {"report": str(write_run_report(self.cfg, self.state))}

    # -- driving ----------------------------------------------------------------------------------
    def run(self, from_stage: str | None = None) -> Path:
        from rich.console import Console

        console = Console()
        redo = set(STAGES[STAGES.index(from_stage):]) if from_stage else set()
        self.fresh_training = "train" in redo  # `--from train` (or earlier) trains anew
        prints = stage_fingerprints(self.cfg)
        changed = next((name for name in STAGES if name in self.state["stages"] and name not in redo
                        and self.state["stages"][name].get("fingerprint") != prints[name]), None)
        if changed is not None:
            console.print(f"[argen-ray] the settings stage {changed} reads changed since it ran (or it ran before "
                          f"run.json recorded them): redoing it and every later stage")
            redo |= set(STAGES[STAGES.index(changed):])
        for name in redo | {"report"}:  # the report always reflects the latest state
            self.state["stages"].pop(name, None)
        with _parent_run(self.cfg, self.state, self._save_state) as mlflow:
            try:
                for index, name in enumerate(STAGES, 1):
                    if name in self.state["stages"]:
                        console.print(f"[dim][argen-ray] stage {index}/{len(STAGES)} {name}: done in an earlier run[/]")
                        continue
                    console.rule(f"stage {index}/{len(STAGES)}: {name}")
                    if name in PREFETCH_DURING:
                        self.start_prefetch()
                    start = time.perf_counter()
                    result = getattr(self, f"stage_{name}")()
                    seconds = time.perf_counter() - start
                    self.state["stages"][name] = {"seconds": round(seconds, 1), "finished": time.time(),
                                                  "fingerprint": prints[name], "result": result}
                    self._save_state()
                    if mlflow:
                        _log_stage(mlflow, name, seconds, result)
                    console.print(f"[argen-ray] {name} finished in {seconds:.0f} s")
            finally:
                self.stop_prefetch()  # however the run ends
        return Path(self.result("report")["report"])


class _parent_run:
    """One MLflow parent run for the whole job (resumed by id on a rerun); stages nest under it."""

    def __init__(self, cfg, state: dict, save):
        self.cfg, self.state, self.save, self.mlflow = cfg, state, save, None

    def __enter__(self):
        if not self.cfg.tracking.enabled:
            return None
        import mlflow

        from argen_ray.ard.training import ensure_experiment
        from argen_ray.config.root import config_to_yaml

        mlflow.set_experiment(experiment_id=ensure_experiment(self.cfg))
        if self.state.get("mlflow_run_id"):
            mlflow.start_run(run_id=self.state["mlflow_run_id"])
        else:
            run = mlflow.start_run(run_name=f"run-{Path(self.cfg.run_dir).name}")
            self.state["mlflow_run_id"] = run.info.run_id
            self.save()
            mlflow.log_text(config_to_yaml(self.cfg), "config.resolved.yaml")
            mlflow.log_params({"data.kind": self.cfg.data.kind, "generator.backend": self.cfg.generator.backend,
                               "generator.model": self.cfg.generator.model, "asi.vlm.backend": self.cfg.asi.vlm.backend,
                               "train.iterations": self.cfg.train.iterations,
                               "recognition.models": ",".join(self.cfg.recognition.models)})
        self.mlflow = mlflow
        return mlflow

    def __exit__(self, exc_type, exc, tb):
        if self.mlflow is not None:
            status = "FINISHED" if exc_type is None else ("KILLED" if exc_type is KeyboardInterrupt else "FAILED")
            self.mlflow.end_run(status=status)
        return False


def _log_stage(mlflow, name: str, seconds: float, result: dict) -> None:
    """Stage duration, and the numbers a reader compares across runs, on the parent run."""
    import json

    mlflow.log_metric(f"stage_seconds_{name}", seconds)
    if name == "prompts":
        mlflow.log_metrics({"prompts": result["prompts"], "hallucination_rate": result["hallucination_rate"]})
    elif name == "recognition":
        summary = json.loads(Path(result["results"]).read_text())
        for model, variants in summary["mean"].items():
            for variant, s in variants.items():
                metrics = {f"{model}.{variant}.war": s["war"], f"{model}.{variant}.uar": s["uar"]}
                metrics |= {f"{model}.{variant}.ar_{c}": v for c, v in s["ar"].items() if v is not None}
                mlflow.log_metrics(metrics)
        for model, entry in summary.get("study", {}).items():  # paired Δ over (fold, seed) pairs
            mlflow.log_metrics({f"{model}.delta.{k}": d["mean"] for k, d in entry.get("delta", {}).items()
                                if d["mean"] is not None})
        mlflow.log_artifact(result["results"], "recognition")
    elif name == "metrics":
        gen = json.loads(Path(result["results"]).read_text())
        values = {"fvd": gen["fvd"], "tfvd": gen["tfvd"]["value"], "sfvd": gen["sfvd"]["value"],
                  "diversity_generated": gen["diversity"]["generated"]["mean"],
                  "diversity_real": gen["diversity"]["real"]["mean"]}
        mlflow.log_metrics({k: v for k, v in values.items() if v is not None})
        mlflow.log_artifact(result["results"], "metrics")
    elif name == "report":
        mlflow.log_artifacts(str(Path(result["report"]).parent), "report")


def pending_stages(cfg, from_stage: str | None) -> list[str]:
    """The stages a run with this config will execute (those not finished in run.json)."""
    if from_stage:
        return list(STAGES[STAGES.index(from_stage):])
    done = EndToEndRun(cfg).state["stages"]
    return [s for s in STAGES if s not in done]


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, preflight=lambda c: pending_stages(c, args.from_stage))
    start = time.perf_counter()
    report = EndToEndRun(cfg, progress=not args.no_progress).run(args.from_stage)
    print(f"[argen-ray] run finished in {(time.perf_counter() - start) / 60:.1f} min; report: {report}")
    return 0
