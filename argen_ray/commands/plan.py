"""`argen-ray plan --config FILE`: the compute plan of a config before anything runs (DESIGN 2.5).

Per stage: videos, NFE (UNet sample-evaluations) per video, UNet FLOPs per evaluation counted on
the configured model's real architecture (built on `meta`, argen_ray/ard/compute.py), total
FLOPs, GPU-hours under a stated throughput assumption and the wall-clock on the GPUs the stage's
actors hold. Then GPU memory per actor (parameters by dtype + activations at the configured size
and batch) and whether the placement fits the GPUs it asks for. Nothing is loaded or started.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from argen_ray.ard.compute import GIB
from argen_ray.commands import add_config_arguments, config_from_args
from argen_ray.errors import ArgenError

RESUMABLE = False
WEEK_HOURS = 7 * 24
# An actor fits when its parameters + activations stay under this share of its GPU memory: the
# rest is for the CUDA context, the caching allocator's fragmentation and backward's transients.
HEADROOM = 0.9
# Worker-group manifest the GPU preset's jobs run on (its GPU count is the plan's supply).
RAYJOB_MANIFEST = Path(__file__).resolve().parents[2] / "cluster" / "kuberay" / "rayjob-train.yaml"


class PlanError(ArgenError, ValueError):
    """The plan cannot be made (names the option or config key)."""


@dataclass
class GPUSpec:
    name: str = "A100-SXM4-80GB"
    memory_gib: float = 80.0
    peak_tflops: float = 312.0      # dense fp16/bf16 tensor-core peak
    utilization: float = 0.4        # assumed model-FLOPs utilisation of that peak

    @property
    def flops_per_s(self) -> float:
        return self.peak_tflops * 1e12 * self.utilization


@dataclass
class StagePlan:
    name: str
    items: str                     # what is counted, e.g. "256000 candidates x 8 frames"
    flops: float
    gpus: float                    # GPUs its actors hold at once
    nfe_per_video: dict | None = None
    unet_tflops_per_eval: float | None = None
    notes: list[str] = field(default_factory=list)

    def gpu_hours(self, gpu: GPUSpec) -> float:
        return self.flops / gpu.flops_per_s / 3600

    def wall_hours(self, gpu: GPUSpec) -> float:
        return self.gpu_hours(gpu) / max(self.gpus, 1e-9)


@dataclass
class ActorMemory:
    actor: str
    count: int
    num_gpus: float
    params_bytes: dict[str, int]
    activation_bytes: int
    reserved_bytes: int = 0        # e.g. vLLM's KV-cache pool
    what: str = ""

    @property
    def total(self) -> int:
        return sum(self.params_bytes.values()) + self.activation_bytes + self.reserved_bytes

    def fits(self, gpu: GPUSpec) -> bool:
        return self.total <= HEADROOM * self.num_gpus * gpu.memory_gib * GIB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    spec = GPUSpec()
    parser.add_argument("--gpu-name", default=spec.name, help=f"GPU the throughput assumption names (default {spec.name})")
    parser.add_argument("--gpu-memory-gib", type=float, default=spec.memory_gib, help="memory per GPU (default 80)")
    parser.add_argument("--gpu-tflops", type=float, default=spec.peak_tflops,
                        help="dense fp16 peak TFLOP/s per GPU (default 312, A100)")
    parser.add_argument("--utilization", type=float, default=spec.utilization,
                        help="assumed fraction of the peak reached (default 0.4)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPUs of the cluster (default: the GPU worker group of cluster/kuberay/rayjob-train.yaml)")
    parser.add_argument("--train-clips", type=int, default=None,
                        help="real training clips per fold (default: counted from data.root when it is readable)")
    parser.add_argument("--generated-clips", type=int, default=None,
                        help="generated clips in all (default: recognition.augment applied to data.root's counts)")
    parser.add_argument("--identities", type=int, default=100, help="identities the prompt stage serves (default 100)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the plan as JSON here")


def manifest_gpus(path: Path = RAYJOB_MANIFEST) -> int | None:
    import yaml

    if not path.is_file():
        return None
    spec = yaml.safe_load(path.read_text())["spec"]["rayClusterSpec"]
    total = 0
    for group in spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        total += int(group.get("replicas", 0)) * int(limits.get("nvidia.com/gpu", 0))
    return total


def _mean(values) -> float:
    return sum(values) / len(values)


def plan_generation_stages(cfg, gpu: GPUSpec, generated: int | None) -> tuple[list[StagePlan], ActorMemory | None]:
    """Policy training (short candidates) and final generation on the TI2V generator."""
    from argen_ray.ard.compute import t2v_component_configs, t2v_costs
    from argen_ray.ard.ti2v import ti2v_nfe

    g, t, r = cfg.generator, cfg.train, cfg.reward
    if g.backend != "ti2v":
        return [], None
    configs = t2v_component_configs(g.model)
    samples = 2 * g.max_batch  # one group of requests, CFG's two halves in one call
    costs, sizes = t2v_costs(configs, g.dtype, samples, g.window, g.height, g.width, g.num_frames)
    per_eval = costs["unet"].flops / samples
    steps = g.action_space.steps
    gpus = g.num_actors * g.num_gpus

    def nfe(frames: int) -> dict:
        new = frames - 1
        return {k: ti2v_nfe(new, s, g.resample, window=g.window, condition_frames=g.condition_frames)
                for k, s in (("min", min(steps)), ("mean", _mean(steps)), ("max", max(steps)))}

    def video_flops(frames: int, evals: float) -> float:
        decode = costs["vae_decode"].flops * frames / g.num_frames
        return evals * per_eval + decode + costs["vae_encode"].flops + costs["text_encoder"].flops / samples

    stages = []
    candidates = t.iterations * t.batch_size * r.group_size
    train_nfe = nfe(t.candidate_frames)
    stages.append(StagePlan(
        "train", f"{t.iterations} it x {t.batch_size} states x G={r.group_size} = {candidates:,} candidates of "
                 f"{t.candidate_frames} frames", candidates * video_flops(t.candidate_frames, train_nfe["mean"]),
        gpus, train_nfe, per_eval / 1e12,
        [f"NFE at the uniform (untrained) policy's mean T={_mean(steps):g}; r={g.resample} resample passes, CFG x2"]))
    folds = len(cfg.recognition.folds or [cfg.data.fold])
    gen_nfe = nfe(g.num_frames)
    notes = ["FLOPs at the largest T (the trained policy's T is known only after training)"]
    if generated is None:
        notes.append("generated clip count unknown (dataset not readable here): pass --generated-clips")
    stages.append(StagePlan(
        "generate", f"{generated if generated is not None else '?'} clips of {g.num_frames} frames "
                    f"(recognition.augment; generated once, reused by the {folds} fold(s))",
        (generated or 0) * video_flops(g.num_frames, gen_nfe["max"]), gpus, gen_nfe, per_eval / 1e12, notes))
    params = {}
    for size in sizes.values():
        for k, v in size.bytes_by_dtype.items():
            params[k] = params.get(k, 0) + v
    act = max(costs["unet"].activation_bytes, costs["vae_decode"].activation_bytes)
    memory = ActorMemory("GeneratorActor", g.num_actors, g.num_gpus, params, act,
                         what=f"UNet call of {samples} samples x {g.window} frames at {g.height}x{g.width}, or a "
                              f"VAE decode of {g.num_frames} frames (peak of the two)")
    return stages, memory


def plan_prompt_stage(cfg, identities: int) -> tuple[list[StagePlan], ActorMemory | None]:
    from argen_ray.ard.compute import kv_cache_bytes_per_token, vlm_config, vlm_size

    v = cfg.asi.vlm
    if v.backend not in ("vllm", "transformers") or v.model == "tiny":
        return [], None
    config = vlm_config(v.model)
    size = vlm_size(config)
    requests = identities * len(cfg.asi.emotions or cfg.data.scarce_classes or [])
    tokens = 1024 + v.max_new_tokens  # assumed prompt (image + instruction + retrieved AUs) + answer
    stage = StagePlan("prompts", f"{requests} VLM requests ({identities} identities x emotions), ~{tokens} tokens each",
                      requests * tokens * 2 * size.params, max(v.num_gpus, 1),
                      notes=["2 FLOPs per parameter per token; decode is memory-bound, so expect longer"])
    kv = kv_cache_bytes_per_token(config)
    if v.backend == "vllm":
        reserved = 0  # vLLM takes gpu_memory_utilization of the GPU; checked below
        what = (f"vLLM preallocates {v.gpu_memory_utilization:.0%} of the GPU; KV cache {kv / 1024:.0f} KiB/token, "
                f"{v.max_model_len} tokens = {kv * v.max_model_len / GIB:.2f} GiB per full sequence")
    else:
        reserved = kv * tokens * v.batch_size
        what = f"KV cache of a batch of {v.batch_size} x {tokens} tokens"
    memory = ActorMemory("VLMActor", 1, max(v.num_gpus, 1), size.bytes_by_dtype, kv * v.max_model_len, reserved, what)
    return [stage], memory


def plan_recognition_stage(cfg, train_clips: int | None, generated: int | None) -> tuple[list[StagePlan], list[ActorMemory]]:
    from argen_ray.ard.compute import recognition_cost

    rc = cfg.recognition
    folds = len(rc.folds or [cfg.data.fold])
    stages, memories, flops, notes = [], [], 0.0, []
    for name in rc.models:
        cost, params = recognition_cost(name, rc.batch_size, rc.num_segments, rc.image_size, rc.hidden)
        per_clip = 3 * cost.flops / rc.batch_size  # forward + backward
        if train_clips is not None:
            # original and augmented variants, each trained on every fold
            flops += per_clip * rc.epochs * folds * (2 * train_clips + (generated or 0))
        memories.append(ActorMemory(f"recognition {name}", 1, 1.0,
                                    {"float32": 3 * 4 * params},  # weights + grads + SGD momentum
                                    cost.activation_bytes,
                                    what=f"training batch {rc.batch_size} x {rc.num_segments} x {rc.image_size} px"))
        notes.append(f"{name}: {per_clip / 1e9:.0f} GFLOP per clip-epoch")
    items = (f"{len(rc.models)} models x {folds} folds x 2 variants x {rc.epochs} epochs x "
             f"{train_clips if train_clips is not None else '?'} clips "
             f"(+{generated if generated is not None else '?'} generated)")
    if train_clips is None:
        notes.append("training clip count unknown (dataset not readable here): pass --train-clips")
    notes.append("runs in the driver process: give its job a GPU (RayJob entrypointNumGpus / "
                 "`ray job submit --entrypoint-num-gpus 1`), the head pod has none")
    stages.append(StagePlan("recognition", items, flops, 1.0, notes=notes))
    return stages, memories


def dataset_counts(cfg) -> tuple[int | None, int | None]:
    """Real training clips of the configured fold and the generated clips recognition.augment adds
    to them (DESIGN 2.5); (None, per-class overrides if they cover every scarce class) where the
    dataset is not readable here."""
    from argen_ray.commands.generate import augmentation_plan

    try:
        from argen_ray.data import open_dataset

        dataset = open_dataset(cfg)
        return len(dataset.training_labels()), sum(augmentation_plan(cfg, dataset).amounts.values())
    except Exception:  # no dataset here: the plan says so instead
        aug, scarce = cfg.recognition.augment, list(cfg.data.scarce_classes or [])
        covered = bool(scarce) and set(scarce) <= set(aug.per_class)
        return None, (sum(int(aug.per_class[c]) for c in scarce) if covered else None)


def build_plan(cfg, gpu: GPUSpec, identities: int = 100, train_clips: int | None = None,
               generated: int | None = None):
    prompt_stages, vlm_mem = plan_prompt_stage(cfg, identities)
    gen_stages, gen_mem = plan_generation_stages(cfg, gpu, generated)
    rec_stages, rec_mems = plan_recognition_stage(cfg, train_clips, generated)
    memories = [m for m in (vlm_mem, gen_mem) if m is not None] + rec_mems
    return prompt_stages + gen_stages + rec_stages, memories


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def render(cfg, stages: list[StagePlan], memories: list[ActorMemory], gpu: GPUSpec, gpus: int | None) -> str:
    lines = [f"Throughput assumption: {gpu.name}, {gpu.peak_tflops:g} TFLOP/s dense fp16 peak x "
             f"{gpu.utilization:.0%} utilisation = {gpu.flops_per_s / 1e12:.0f} TFLOP/s per GPU, "
             f"{gpu.memory_gib:g} GiB per GPU; cluster GPUs: {gpus if gpus is not None else 'unknown'}", "",
             "Stages"]
    for s in stages:
        lines.append(f"  {s.name}: {s.items}")
        if s.nfe_per_video:
            n = s.nfe_per_video
            lines.append(f"    NFE per video: {n['min']:g} (min T) / {n['mean']:g} (mean T) / {n['max']:g} (max T); "
                         f"UNet {s.unet_tflops_per_eval:.2f} TFLOP per sample-evaluation")
        lines.append(f"    total {s.flops:.3g} FLOP = {s.gpu_hours(gpu):,.1f} GPU-hours; on {s.gpus:g} GPU(s): "
                     f"{s.wall_hours(gpu):,.1f} h ({s.wall_hours(gpu) / 24:,.1f} days)")
        for note in s.notes:
            lines.append(f"    note: {note}")
    train = next((s for s in stages if s.name == "train"), None)
    if train is not None and train.flops:
        verdict = "within" if train.wall_hours(gpu) <= WEEK_HOURS else "OVER"
        lines.append(f"  policy training: {train.wall_hours(gpu) / 24:.1f} days on {train.gpus:g} GPU(s) - {verdict} "
                     f"the 1-week budget")
        if verdict == "OVER":
            fit = math.floor(cfg.train.iterations * WEEK_HOURS / train.wall_hours(gpu))
            gpus_needed = math.ceil(train.gpu_hours(gpu) / WEEK_HOURS)
            lines.append(f"    to fit a week: <= {fit} iterations on these GPUs, or {gpus_needed} generator GPUs")
    lines += ["", "GPU memory per actor (parameters by dtype + activations)"]
    for m in memories:
        params = ", ".join(f"{k} {_gib(v)}" for k, v in sorted(m.params_bytes.items()))
        extra = f" + reserved {_gib(m.reserved_bytes)}" if m.reserved_bytes else ""
        lines.append(f"  {m.actor} x{m.count} ({m.num_gpus:g} GPU each): params {params}; activations "
                     f"{_gib(m.activation_bytes)}{extra} = {_gib(m.total)} of {_gib(m.num_gpus * gpu.memory_gib * GIB)}"
                     f" -> {'fits' if m.fits(gpu) else 'DOES NOT FIT'} ({HEADROOM:.0%} usable)")
        lines.append(f"    ({m.what})")
    lines += ["", "Placement"]
    lines += [f"  {line}" for line in placement_problems(cfg, memories, gpu, gpus)] or ["  ok"]
    return "\n".join(lines)


def gpus_asked(cfg) -> dict[str, float]:
    """GPUs each stage's actors hold at once."""
    asked = {"prompts": cfg.asi.vlm.num_gpus if cfg.asi.vlm.use_ray else 0.0,
             "train": cfg.generator.num_actors * cfg.generator.num_gpus + cfg.train.num_learners * cfg.train.learner_num_gpus,
             "generate": cfg.generator.num_actors * cfg.generator.num_gpus}
    return asked


def placement_problems(cfg, memories: list[ActorMemory], gpu: GPUSpec, gpus: int | None) -> list[str]:
    problems = [f"{m.actor} needs {_gib(m.total)} but gets {m.num_gpus:g} x {gpu.memory_gib:g} GiB "
                f"({HEADROOM:.0%} usable)"
                for m in memories if not m.fits(gpu)]
    v = cfg.asi.vlm
    if v.backend == "vllm":
        vlm = next((m for m in memories if m.actor == "VLMActor"), None)
        pool = v.gpu_memory_utilization * gpu.memory_gib * GIB
        if vlm is not None and sum(vlm.params_bytes.values()) + vlm.activation_bytes > pool:
            problems.append(f"VLMActor: weights + one {v.max_model_len}-token sequence exceed vLLM's "
                            f"{v.gpu_memory_utilization:.0%} pool ({_gib(pool)})")
    if gpus is not None:
        for stage, n in gpus_asked(cfg).items():
            if n > gpus:
                problems.append(f"{stage}: its actors ask for {n:g} GPUs, the cluster has {gpus}")
    return problems


def run(args: argparse.Namespace) -> int:
    from argen_ray.io import atomic_write_json

    cfg = config_from_args(args, save=False)
    for name in ("gpu_memory_gib", "gpu_tflops", "utilization"):
        if getattr(args, name) <= 0:
            raise PlanError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    gpu = GPUSpec(args.gpu_name, args.gpu_memory_gib, args.gpu_tflops, args.utilization)
    gpus = args.gpus if args.gpus is not None else manifest_gpus()
    counted_train, counted_generated = dataset_counts(cfg)
    train_clips = args.train_clips if args.train_clips is not None else counted_train
    generated = args.generated_clips if args.generated_clips is not None else counted_generated
    stages, memories = build_plan(cfg, gpu, args.identities, train_clips, generated)
    print(render(cfg, stages, memories, gpu, gpus))
    if args.json_out:
        atomic_write_json(args.json_out, {
            "gpu": asdict(gpu), "gpus": gpus,
            "stages": [asdict(s) | {"gpu_hours": s.gpu_hours(gpu), "wall_hours": s.wall_hours(gpu)} for s in stages],
            "memory": [asdict(m) | {"total_bytes": m.total, "fits": m.fits(gpu)} for m in memories],
            "placement_problems": placement_problems(cfg, memories, gpu, gpus)})
    return 0
