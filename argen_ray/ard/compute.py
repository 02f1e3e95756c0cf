"""Compute and memory accounting of the GPU stages, from the configured models' real architectures.

Every number here comes from building the model on the `meta` device (no weights, no memory)
and running its forward there: parameters are counted per dtype, FLOPs by
`torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add of every matmul / conv /
attention), and activation memory by `PeakLiveTensors`, which follows every tensor the forward
allocates and frees and keeps the peak of the live bytes. Cores only: `argen-ray plan` turns them
into a per-stage plan (argen_ray/commands/plan.py).

    NFE per video = windows * T * (r + 1) * 2,  windows = ceil(N / (F - K))   (ti2v.py, DESIGN 2.2)
"""
from __future__ import annotations

import json
import math
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from argen_ray.errors import ArgenError

PUBLISHED_T2V_ID = "damo-vilab/text-to-video-ms-1.7b"
PUBLISHED_T2V = Path(__file__).resolve().parent / "published" / "text-to-video-ms-1.7b"
PUBLISHED_VLM_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
PUBLISHED_VLM = Path(__file__).resolve().parents[1] / "asi" / "published" / "Qwen2.5-VL-7B-Instruct"
GIB = 1024 ** 3


class ComputePlanError(ArgenError, ValueError):
    """A model's architecture cannot be read for the compute plan (names the model and why)."""


class PeakLiveTensors(TorchDispatchMode):
    """Peak bytes of tensors alive at once while the mode is on (works on `meta` tensors).

    Each output on a fresh storage (not a view of an input, not an input changed in place) adds
    its storage's bytes until Python frees the last tensor on that storage: a view made by a later
    op (`view`, `transpose`, `_unsafe_view`) keeps its base's storage counted, as it keeps the
    memory on a GPU. Tensors that existed when the mode started (weights, inputs) are not counted.
    Under autograd the tensors saved for backward stay alive, so the peak of a training forward
    includes them.
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, list[int]] = {}   # storage id -> [bytes, live tensors on it]

    def _release(self, key: int) -> None:
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage()._cdata for a in args if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage()._cdata
            if key in inputs and key not in self._storages:
                continue                      # a view or in-place result of an uncounted tensor
            if key not in self._storages:
                self._storages[key] = [t.untyped_storage().nbytes(), 0]
                self.live += self._storages[key][0]
                self.peak = max(self.peak, self.live)
            self._storages[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


@dataclass
class ForwardCost:
    """One forward pass: FLOPs and the peak of the activations it keeps alive at once."""

    flops: float
    activation_bytes: int


@dataclass
class ModelSize:
    """Parameters (and buffers) of a model by dtype."""

    params: int
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())


def model_size(module: torch.nn.Module) -> ModelSize:
    by_dtype: dict[str, int] = {}
    params = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if isinstance(t, torch.nn.Parameter):
            params += t.numel()
        key = str(t.dtype).removeprefix("torch.")
        by_dtype[key] = by_dtype.get(key, 0) + t.numel() * t.element_size()
    return ModelSize(params, by_dtype)


def measure_forward(fn, *, grad: bool = False) -> ForwardCost:
    """FLOPs and peak live activation bytes of `fn()` (inference unless `grad`)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.set_grad_enabled(grad):
        peak = PeakLiveTensors()
        with FlopCounterMode(display=False) as flops, peak:
            out = fn()
        del out
    return ForwardCost(float(flops.get_total_flops()), peak.peak)


# --- the text-to-video model -------------------------------------------------------------------

def t2v_component_configs(model: str) -> dict[str, dict]:
    """unet / vae / text_encoder configs of `generator.model`: the folder's own files, a hub
    snapshot's in the local HF cache, the vendored published ones for the ModelScope hub id, or
    the tiny model's."""
    if model == "tiny":
        from argen_ray.ard.tiny_models import tiny_t2v_path

        root = tiny_t2v_path()
    elif Path(model).expanduser().is_dir():
        root = Path(model).expanduser()
    else:
        from argen_ray.preflight import hub_snapshot

        root = hub_snapshot(model) or (PUBLISHED_T2V if model == PUBLISHED_T2V_ID else None)
        if root is None:
            raise ComputePlanError(f"generator.model={model!r}: not a local folder, not in the HF cache, and not "
                                   f"{PUBLISHED_T2V_ID} (whose configs ship with argen-ray)")
    configs = {}
    for part in ("unet", "vae", "text_encoder"):
        path = root / part / "config.json"
        if not path.is_file():
            raise ComputePlanError(f"generator.model={model!r}: {path} is missing")
        configs[part] = json.loads(path.read_text())
    return configs


def build_t2v_on_meta(configs: dict[str, dict], dtype: torch.dtype = torch.float16) -> dict[str, torch.nn.Module]:
    """The three T2V components with the given configs, on `meta` (the classes the pipeline loads)."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextConfig, CLIPTextModel

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the hub config's legacy keys are reported as ignored
    try:
        with torch.device("meta"):
            unet = UNet3DConditionModel.from_config(configs["unet"]).to(dtype)
            vae = AutoencoderKL.from_config(configs["vae"]).to(dtype)
            text = CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"])).to(dtype)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text.eval()}


def _meta(*shape, dtype=torch.float16) -> torch.Tensor:
    return torch.empty(*shape, device="meta", dtype=dtype)


@lru_cache(maxsize=32)
def _t2v_costs(configs_json: str, dtype_name: str, samples: int, frames: int, height: int, width: int,
               decode_frames: int) -> tuple[dict, dict]:
    configs = json.loads(configs_json)
    dtype = getattr(torch, dtype_name)
    parts = build_t2v_on_meta(configs, dtype)
    unet, vae, text = parts["unet"], parts["vae"], parts["text_encoder"]
    scale = 2 ** (len(configs["vae"]["block_out_channels"]) - 1)
    h, w = height // scale, width // scale
    cross = configs["unet"]["cross_attention_dim"]
    tokens = configs["text_encoder"]["max_position_embeddings"]
    latents = _meta(samples, configs["unet"]["in_channels"], frames, h, w, dtype=dtype)
    timesteps = torch.full((samples,), 500, device="meta", dtype=torch.long)
    cond = _meta(samples, tokens, cross, dtype=dtype)
    costs = {
        "unet": measure_forward(lambda: unet(latents, timesteps, encoder_hidden_states=cond).sample),
        "vae_decode": measure_forward(lambda: vae.decode(
            _meta(decode_frames, configs["vae"]["latent_channels"], h, w, dtype=dtype)).sample),
        "vae_encode": measure_forward(lambda: vae.encode(_meta(1, 3, height, width, dtype=dtype)).latent_dist.mode()),
        "text_encoder": measure_forward(lambda: text(torch.zeros(samples, tokens, dtype=torch.long,
                                                                 device="meta")).last_hidden_state),
    }
    sizes = {name: model_size(m) for name, m in parts.items()}
    return ({k: (v.flops, v.activation_bytes) for k, v in costs.items()},
            {k: (v.params, v.bytes_by_dtype) for k, v in sizes.items()})


def t2v_costs(configs: dict[str, dict], dtype: str, samples: int, frames: int, height: int, width: int,
              decode_frames: int) -> tuple[dict[str, ForwardCost], dict[str, ModelSize]]:
    """Per component: the forward cost of one UNet call on `samples` windows of `frames` latent
    frames (CFG's two halves are two samples), one VAE decode of `decode_frames` frames, one VAE
    encode of a reference and one text-encoder call; and each component's size."""
    costs, sizes = _t2v_costs(json.dumps(configs, sort_keys=True), dtype, samples, frames, height, width,
                              decode_frames)
    return ({k: ForwardCost(*v) for k, v in costs.items()}, {k: ModelSize(*v) for k, v in sizes.items()})


# --- the VLM ------------------------------------------------------------------------------------

def vlm_config(model: str) -> dict:
    if Path(model).expanduser().is_dir():
        path = Path(model).expanduser() / "config.json"
    else:
        from argen_ray.preflight import hub_snapshot

        root = hub_snapshot(model) or (PUBLISHED_VLM if model == PUBLISHED_VLM_ID else None)
        if root is None:
            raise ComputePlanError(f"asi.vlm.model={model!r}: not a local folder, not in the HF cache, and not "
                                   f"{PUBLISHED_VLM_ID} (whose config ships with argen-ray)")
        path = root / "config.json"
    if not path.is_file():
        raise ComputePlanError(f"asi.vlm.model={model!r}: {path} is missing")
    return json.loads(path.read_text())


def build_vlm_on_meta(config: dict, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """Qwen2.5-VL with this config on `meta`, through the class the transformers backend loads."""
    from transformers import Qwen2_5_VLConfig
    from transformers.utils import logging as hf_logging

    from argen_ray.asi.vlm import TransformersVLM

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the published config's legacy rope keys are reported, not used
    try:
        with torch.device("meta"):
            return TransformersVLM.model_class()(Qwen2_5_VLConfig(**config)).to(dtype)
    finally:
        hf_logging.set_verbosity(verbosity)


@lru_cache(maxsize=4)
def _vlm_size(config_json: str) -> tuple[int, dict]:
    size = model_size(build_vlm_on_meta(json.loads(config_json)))
    return size.params, size.bytes_by_dtype


def vlm_size(config: dict) -> ModelSize:
    return ModelSize(*_vlm_size(json.dumps(config, sort_keys=True)))


def kv_cache_bytes_per_token(config: dict, bytes_per_value: int = 2) -> int:
    """K and V of every decoder layer for one token (bf16)."""
    text = config.get("text_config") or config
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    return 2 * text["num_hidden_layers"] * text["num_key_value_heads"] * head_dim * bytes_per_value


# --- recognition baselines ------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _recognition_cost(name: str, batch: int, segments: int, size: int, hidden: int) -> tuple[float, int, int]:
    from argen_ray.recognition.models import build_model

    with torch.device("meta"):
        model = build_model(name, hidden=hidden, num_segments=segments).train()
    clips = torch.empty(batch, segments, 3, size, size, device="meta")
    cost = measure_forward(lambda: model(clips), grad=True)
    return cost.flops, cost.activation_bytes, model_size(model).params


def recognition_cost(name: str, batch: int, segments: int, size: int, hidden: int = 256) -> tuple[ForwardCost, int]:
    """Training forward of one batch (autograd on: the saved activations are in the peak) and the
    model's parameter count. A training step costs ~3x the forward FLOPs (forward + backward)."""
    flops, act, params = _recognition_cost(name, batch, segments, size, hidden)
    return ForwardCost(flops, act), params
