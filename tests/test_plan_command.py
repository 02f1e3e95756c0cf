"""`argen-ray plan`: the GPU preset's per-stage plan (short RL candidates, DESIGN 2.5), memory per
actor from the real architectures, and the placement check against the cluster's GPUs."""
from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from argen_ray.ard.compute import GIB
from argen_ray.cli import main
from argen_ray.commands.plan import GPUSpec, build_plan, manifest_gpus, placement_problems
from argen_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GPU_PRESET = ROOT / "configs" / "gpu-cluster.yaml"
PUBLISHED_T2V = ROOT / "argen_ray" / "ard" / "published" / "text-to-video-ms-1.7b"
pytestmark = pytest.mark.slow  # builds the full-size models on `meta` (~20-40 s)


class _LiveBytes(TorchDispatchMode):
    """The test's own count of the bytes an op sequence allocates and still holds (on `meta`): a
    storage that none of the op's inputs has is counted until Python frees the last tensor viewing
    it; tensors that existed before are not counted. Written here, not imported, so the oracle
    below does not share a bug with argen_ray.ard.compute.PeakLiveTensors."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.views: dict[int, int] = {}      # counted storage -> live tensors on it

    def _free(self, storage, nbytes):
        self.views[storage] -= 1
        if not self.views[storage]:
            del self.views[storage]
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        old = {a.untyped_storage()._cdata for a in args if isinstance(a, torch.Tensor)} - set(self.views)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            storage = t.untyped_storage() if isinstance(t, torch.Tensor) else None
            if storage is None or storage._cdata in old:
                continue
            if storage._cdata not in self.views:
                self.views[storage._cdata] = 0
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self.views[storage._cdata] += 1
            weakref.finalize(t, self._free, storage._cdata, storage.nbytes())
        return out


def unet_activation_bounds(cfg) -> tuple[int, int]:
    """Bounds on the peak live activation bytes of one batched UNet call of the generator (2 CFG
    samples x generator.max_batch requests x generator.window latent frames, generator.dtype), from
    the published configs and first principles, not from argen_ray's accounting."""
    g = cfg.generator
    unet, vae, text = (json.loads((PUBLISHED_T2V / part / "config.json").read_text())
                       for part in ("unet", "vae", "text_encoder"))
    dtype = getattr(torch, g.dtype)
    nbytes = torch.empty((), dtype=dtype).element_size()
    samples = 2 * g.max_batch
    n = samples * g.window                               # frame-samples: every 2D op sees n images
    scale = 2 ** (len(vae["block_out_channels"]) - 1)    # the VAE's downsampling
    side = (g.height // scale, g.width // scale)
    c, layers = unet["block_out_channels"], unet["layers_per_block"]
    # diffusers' 3D blocks build Transformer2DModel(C // attention_head_dim, attention_head_dim):
    # at level 1 that is C0 / 64 = 5 heads of 64 over H*W = 1024 tokens.
    tokens, head_dim = side[0] * side[1], unet["attention_head_dim"]
    heads = c[0] // head_dim
    # The level-1 spatial self-attention alone, counted the way the plan counts (fresh storages
    # until Python frees the last tensor on them). Its n*heads*tokens^2 scores are the largest
    # tensors of the whole UNet (level 2 has 1/16 of the tokens^2 and 2x the heads, temporal
    # attention 16 frames), so the UNet's peak is reached inside one of these calls, on top of
    # whatever else is live.
    qkv = [torch.empty(n, tokens, c[0], device="meta", dtype=dtype)
           .view(n, tokens, heads, head_dim).transpose(1, 2) for _ in range(3)]
    with torch.no_grad(), _LiveBytes() as alone:
        out = torch.nn.functional.scaled_dot_product_attention(*qkv)
        del out
    # Live through the whole forward: the text states and the time embedding, repeated per frame.
    conditioning = n * (text["max_position_embeddings"] * unet["cross_attention_dim"] + 4 * c[0])
    # Lower bound: during the last up block's attentions the caller still holds that block's input
    # (the level-2 upsampler's output, C1 channels at level 1) and its tuple of layers+1 level-1
    # skips (C0 channels each), so they are live on top of the attention's own peak.
    low = alone.peak + (n * tokens * ((layers + 1) * c[0] + c[1]) + conditioning) * nbytes
    # Upper bound: the attention's peak plus everything that can be live while it runs: every skip
    # of the down path (conv_in's, each level's `layers` ResNet/attention outputs, each
    # downsampler's, at its level's resolution), the conditioning, the timestep projection, the up
    # block's input (C1) and six C0-channel level-1 states in flight around the attention (ResNet
    # output, the transformer's residual, norm and input projection, the attention block's
    # residual and norm).
    skips = c[0] * tokens
    for i, ch in enumerate(c):
        skips += layers * ch * (side[0] >> i) * (side[1] >> i)
        if i < len(c) - 1:
            skips += ch * (side[0] >> (i + 1)) * (side[1] >> (i + 1))
    level1 = (c[1] + 6 * c[0]) * tokens
    high = alone.peak + (n * (skips + level1) + conditioning + samples * c[0]) * nbytes
    return low, high


@pytest.fixture(scope="module")
def preset_plan():
    cfg = load_config(GPU_PRESET)
    stages, memories = build_plan(cfg, GPUSpec(), identities=100, train_clips=9356, generated=1500)
    return cfg, {s.name: s for s in stages}, {m.actor: m for m in memories}


def test_training_plans_short_candidates(preset_plan):
    cfg, stages, _ = preset_plan
    train = stages["train"]
    # 2000 iterations x 32 states x G=4; 8-frame candidates = 7 windows; mean T over {5..25} = 15;
    # r = 4 passes at every step but the last (DESIGN 2.2, TI2V-Zero): T + 4 (T - 1) evaluations per
    # window; CFG x2: 7 * (15 + 56) * 2 = 994 (a 16-frame candidate would be 2130).
    assert cfg.train.candidate_frames == 8
    assert "256,000 candidates of 8 frames" in train.items
    assert train.nfe_per_video == {"min": 294, "mean": 994, "max": 1694}
    evals = 256_000 * 994
    assert evals * train.unet_tflops_per_eval * 1e12 <= train.flops <= 1.05 * evals * train.unet_tflops_per_eval * 1e12
    # The full ModelScope UNet on a 16-frame 32x32 latent window: ~4.9 TFLOP per sample (meta count).
    assert 4.0 < train.unet_tflops_per_eval < 6.0
    generate = stages["generate"]
    assert generate.nfe_per_video["max"] == 15 * (25 + 4 * 24) * 2
    # recognition.augment's clip count drives the generation stage (at the largest T)
    assert generate.items.startswith("1500 clips of 16 frames")
    evals = 1500 * generate.nfe_per_video["max"]
    assert evals * generate.unet_tflops_per_eval * 1e12 <= generate.flops <= 1.05 * evals * generate.unet_tflops_per_eval * 1e12


def test_gpu_hours_follow_the_stated_throughput(preset_plan):
    _, stages, _ = preset_plan
    train = stages["train"]
    slow, fast = GPUSpec(utilization=0.2), GPUSpec(utilization=0.4)
    assert train.gpu_hours(slow) == pytest.approx(2 * train.gpu_hours(fast))
    assert train.gpu_hours(fast) == pytest.approx(train.flops / (312e12 * 0.4) / 3600)
    assert train.wall_hours(fast) == pytest.approx(train.gpu_hours(fast) / 4)  # 4 generator GPUs


def test_memory_per_actor_from_the_real_architectures(preset_plan):
    cfg, _, memories = preset_plan
    gen = memories["GeneratorActor"]
    # UNet 1,411,233,860 + VAE 83,653,863 + CLIP text 340,387,840 params in fp16 (published sizes:
    # tests/test_gpu_models.py checks them against the hub's weight files).
    assert 3.3 * GIB < gen.params_bytes["float16"] < 3.5 * GIB
    # ~6.98e9 bytes: 6.48e9 <= it <= 7.16e9 (the level-1 attention's 6.04e9 + what is live with it)
    low, high = unet_activation_bounds(cfg)
    assert low <= gen.activation_bytes <= high
    # The peak is the batched UNet call's (max_batch requests x 2 CFG samples x 16 frames): it
    # follows the batch, so half the requests per call keep half the activations.
    halved = load_config(GPU_PRESET, [f"generator.max_batch={cfg.generator.max_batch // 2}"])
    _, mems = build_plan(halved, GPUSpec(), train_clips=9356)
    half = next(m for m in mems if m.actor == "GeneratorActor")
    assert half.activation_bytes == pytest.approx(gen.activation_bytes / 2, rel=0.05)
    assert half.params_bytes == gen.params_bytes
    vlm = memories["VLMActor"]
    assert 8.2e9 * 2 < vlm.params_bytes["bfloat16"] < 8.4e9 * 2
    for m in memories.values():
        assert m.fits(GPUSpec()), m.actor
    # 32 clips x 16 segments of 224 px through VGG13 keep ~56 GiB for backward; 64 clips twice that.
    vgg = memories["recognition VGG13_LSTM"]
    assert 40 * GIB < vgg.activation_bytes < 72 * GIB
    cfg = load_config(GPU_PRESET, ["recognition.batch_size=64"])
    _, mems = build_plan(cfg, GPUSpec(), train_clips=9356)
    vgg = next(m for m in mems if m.actor == "recognition VGG13_LSTM")
    assert not vgg.fits(GPUSpec())
    assert any("VGG13_LSTM" in p for p in placement_problems(cfg, mems, GPUSpec(), 4))


def test_placement_checks_the_gpus_the_cluster_has(preset_plan):
    cfg, _, memories = preset_plan
    mems = list(memories.values())
    assert manifest_gpus() == 4          # cluster/kuberay/rayjob-train.yaml's GPU worker group
    assert placement_problems(cfg, mems, GPUSpec(), 4) == []
    problems = placement_problems(cfg, mems, GPUSpec(), 2)
    assert any(p.startswith("train: its actors ask for 4 GPUs, the cluster has 2") for p in problems)
    small = GPUSpec(memory_gib=8)     # the generator needs ~8.6 GiB (fp16 weights 3.4 + activations)
    assert any(p.startswith("GeneratorActor needs") for p in placement_problems(cfg, mems, small, 4))


def test_cli_prints_the_plan_and_writes_json(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(GPU_PRESET), "--train-clips", "9356", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "GPU memory per actor" in text and "GeneratorActor x4" in text and "VLMActor x1" in text
    assert "policy training:" in text and "GPU-hours" in text and "TFLOP per sample-evaluation" in text
    plan = json.loads(out.read_text())
    assert {s["name"] for s in plan["stages"]} == {"prompts", "train", "generate", "recognition"}
    assert plan["gpus"] == 4 and plan["placement_problems"] == []


def test_cli_rejects_a_non_positive_throughput(capsys):
    assert main(["plan", "--config", str(GPU_PRESET), "--utilization", "0"]) == 2
    assert "--utilization must be positive" in capsys.readouterr().err
