"""The GPU preset's models at full size, checked on CPU without their weights.

- ModelScope T2V (`damo-vilab/text-to-video-ms-1.7b`): UNet3DConditionModel, VAE and CLIP text
  encoder built from the hub's own component configs (vendored in argen_ray/ard/published/) on
  `meta`; parameter counts against the hub's weight-file sizes; the shapes the TI2V pipeline
  connects (latent channels, cross-attention width, VAE factor) at the preset's 256 px.
- Save/load: a model with the SAME config keys at reduced width (full-width fp16 weights are
  ~3.4 GB) saved in the hub snapshot's layout with the fp16 variant, loaded through the preset's
  own generator path (`build_generator` of the gpu-cluster `generator` section) and run for one
  TI2V window at a tiny latent size.
- Qwen2.5-VL-7B-Instruct: its published config through the transformers backend's model class,
  on `meta`; the vLLM backend's engine and sampling arguments exactly as it passes them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from argen_ray.ard.compute import (PUBLISHED_T2V, PUBLISHED_VLM, build_t2v_on_meta, build_vlm_on_meta,
                                   model_size, t2v_component_configs, vlm_config)
from argen_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GPU_PRESET = load_config(ROOT / "configs" / "gpu-cluster.yaml")
SIZES = json.loads((PUBLISHED_T2V / "weight_file_sizes.json").read_text())
HEADER = 2 * 1024 * 1024  # safetensors JSON header / torch pickle overhead allowed on top of 2 bytes/param


@pytest.fixture(scope="module")
def t2v():
    configs = t2v_component_configs(GPU_PRESET.generator.model)
    return configs, build_t2v_on_meta(configs, torch.float16)


def test_the_preset_names_the_published_t2v_model():
    assert GPU_PRESET.generator.model == "damo-vilab/text-to-video-ms-1.7b"
    assert (GPU_PRESET.generator.variant, GPU_PRESET.generator.dtype) == ("fp16", "float16")
    index = json.loads((PUBLISHED_T2V / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"] and index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]


@pytest.mark.parametrize("part, weights", [("unet", "unet/diffusion_pytorch_model.fp16.safetensors"),
                                           ("text_encoder", "text_encoder/model.fp16.safetensors"),
                                           ("vae", "vae/diffusion_pytorch_model.fp16.bin")])
def test_parameter_counts_match_the_hub_weight_files(t2v, part, weights):
    _, parts = t2v
    size = model_size(parts[part])
    fp16_bytes = size.bytes_by_dtype["float16"]
    assert fp16_bytes <= SIZES[weights] <= fp16_bytes + HEADER, (
        f"{part}: {size.params:,} params = {fp16_bytes:,} fp16 bytes, but the hub's {weights} has {SIZES[weights]:,}")


def test_unet_fp32_weights_are_twice_the_fp16_ones(t2v):
    _, parts = t2v
    params = model_size(parts["unet"]).params
    assert 4 * params <= SIZES["unet/diffusion_pytorch_model.safetensors"] <= 4 * params + HEADER


def test_components_connect_at_the_preset_size(t2v):
    configs, parts = t2v
    g = GPU_PRESET.generator
    unet, vae, text = parts["unet"], parts["vae"], parts["text_encoder"]
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    assert scale == 8, "VAE downsampling factor"
    assert vae.config.latent_channels == unet.config.in_channels == unet.config.out_channels, "latent channels"
    assert text.config.hidden_size == unet.config.cross_attention_dim, "text width vs UNet cross-attention"
    assert g.height // scale == unet.config.sample_size == 32, "256 px -> the UNet's native 32x32 latent"
    ids = torch.zeros(2, text.config.max_position_embeddings, dtype=torch.long, device="meta")
    with torch.no_grad():
        cond = text(ids).last_hidden_state
        x = torch.empty(2, 4, g.window, g.height // scale, g.width // scale, device="meta", dtype=torch.float16)
        eps = unet(x, torch.tensor([999, 999], device="meta"), encoder_hidden_states=cond).sample
        frames = vae.decode(torch.empty(g.num_frames, 4, 32, 32, device="meta", dtype=torch.float16)).sample
        ref = vae.encode(torch.empty(1, 3, g.height, g.width, device="meta", dtype=torch.float16)).latent_dist.mode()
    assert tuple(cond.shape) == (2, 77, 1024)
    assert tuple(eps.shape) == (2, 4, 16, 32, 32), "UNet output: one noise prediction per window frame"
    assert tuple(frames.shape) == (16, 3, 256, 256)
    assert tuple(ref.shape) == (1, 4, 32, 32)


def _reduced(configs: dict[str, dict], vocab_size: int) -> dict[str, dict]:
    """The published configs with every key kept and only the widths (and text depth) reduced."""
    unet = dict(configs["unet"], block_out_channels=[32, 32, 64, 64], attention_head_dim=8, cross_attention_dim=32)
    vae = dict(configs["vae"], block_out_channels=[32, 32, 64, 64])
    text = dict(configs["text_encoder"], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, projection_dim=32, vocab_size=vocab_size)
    assert set(unet) == set(configs["unet"]) and set(vae) == set(configs["vae"])
    return {"unet": unet, "vae": vae, "text_encoder": text}


@pytest.mark.slow
def test_hub_layout_fp16_variant_loads_through_the_preset_path_and_runs_a_ti2v_window(tmp_path):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from argen_ray.ard.generator import GenerationRequest, build_generator
    from argen_ray.ard.tiny_models import SCHEDULER_CONFIG, _tiny_tokenizer

    tokenizer = _tiny_tokenizer()
    configs = _reduced(t2v_component_configs(GPU_PRESET.generator.model), len(tokenizer))
    torch.manual_seed(0)
    pipe = TextToVideoSDPipeline(
        vae=AutoencoderKL.from_config(configs["vae"]), unet=UNet3DConditionModel.from_config(configs["unet"]),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"])), tokenizer=tokenizer,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG)).to(torch.float16)
    folder = tmp_path / "text-to-video-ms-1.7b"
    pipe.save_pretrained(folder, variant="fp16")
    shutil.copy(PUBLISHED_T2V / "model_index.json", folder / "model_index.json")  # the hub's own index
    for name in ("unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
                 "text_encoder/model.fp16.safetensors"):
        assert (folder / name).is_file(), f"hub layout: {name} missing"

    cfg = load_config(ROOT / "configs" / "gpu-cluster.yaml",
                      [f"generator.model={folder}", "generator.device=cpu", "generator.height=64",
                       "generator.width=64", "generator.max_batch=1", "generator.num_frames=2"])
    generator = build_generator(cfg.generator)   # the preset's backend, variant and dtype
    unet = generator.pipeline.unet
    assert unet.dtype == torch.float16 and generator.pipeline.vae.dtype == torch.float16
    assert unet.config.block_out_channels == (32, 32, 64, 64) or list(unet.config.block_out_channels) == [32, 32, 64, 64]
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    [result] = generator.generate([GenerationRequest(image=image, prompt="a face", steps=5, guidance=9.0, seed=0)])
    # one window (one new frame) x (5 DDIM steps + r=4 resample passes at each of the first 4) x 2 (CFG)
    r = GPU_PRESET.generator.resample
    assert result.nfe == 1 * (5 + r * (5 - 1)) * 2
    assert result.frames.shape == (2, 64, 64, 3) and result.frames.dtype == np.uint8
    assert np.isfinite(result.frames.astype(np.float32)).all()


# --- the VLM ------------------------------------------------------------------------------------

def test_qwen25_vl_7b_builds_through_the_transformers_backend_class():
    from transformers import AutoConfig

    from argen_ray.asi.vlm import TransformersVLM

    v = GPU_PRESET.asi.vlm
    assert v.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    config = vlm_config(v.model)
    # the backend's `from_pretrained` reads config.json through AutoConfig: it must give its class's config
    auto = AutoConfig.from_pretrained(PUBLISHED_VLM)
    assert isinstance(auto, TransformersVLM.model_class().config_class), type(auto).__name__
    model = build_vlm_on_meta(config)
    assert isinstance(model, TransformersVLM.model_class())
    size = model_size(model)
    assert 8.2e9 < size.params < 8.4e9, f"Qwen2.5-VL-7B has ~8.29 B parameters, built {size.params:,}"
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["lm_head.weight"] == (152064, 3584), "untied LM head over the 152,064-token vocabulary"
    embed = next(s for n, s in shapes.items() if n.endswith("embed_tokens.weight"))
    assert embed == (152064, 3584)
    merger_out = [s for n, s in shapes.items() if "merger" in n and n.endswith("weight")][-1]
    assert merger_out[0] == 3584, "vision merger must project into the text width"
    layers = {n.split(".layers.")[1].split(".")[0] for n in shapes if ".layers." in n}
    assert len(layers) == 28
    blocks = {n.split(".blocks.")[1].split(".")[0] for n in shapes if ".blocks." in n}
    assert len(blocks) == 32


def test_vllm_engine_and_sampling_arguments_exactly_as_passed():
    from argen_ray.asi.vlm import VLLMVLM, VLMRequest

    v = GPU_PRESET.asi.vlm
    args = VLLMVLM.engine_args(v.model, v.num_gpus, v.max_model_len, v.gpu_memory_utilization, seed=7)
    assert args == {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "tensor_parallel_size": 1, "max_model_len": 8192,
                    "gpu_memory_utilization": 0.9, "seed": 7, "limit_mm_per_prompt": {"image": 1}}
    # one image of the identity frame + the instruction must fit the context vLLM is given
    config = json.loads((PUBLISHED_VLM / "config.json").read_text())
    assert args["max_model_len"] <= config["max_position_embeddings"]
    backend = VLLMVLM.__new__(VLLMVLM)  # the sampling arguments need no engine
    backend.max_new_tokens, backend.temperature, backend.top_p = v.max_new_tokens, v.temperature, v.top_p
    request = VLMRequest(request_id="s1-fear", image=np.zeros((8, 8, 3), np.uint8), emotion="fear",
                         emotion_noun="fear", descriptions=["the inner brows rise"], seed=11)
    # DESIGN 2.1: max 256 new tokens, temperature 0.8, top_p 0.9; the seed is the request's
    assert backend.sampling_args(request) == {"max_tokens": 256, "temperature": 0.8, "top_p": 0.9, "seed": 11}
