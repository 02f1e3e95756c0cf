"""VLM fusion backends (DESIGN 2.1.4): identity image + emotion + retrieved descriptions -> text.

One interface, `generate(requests) -> list[str]`, chosen by `asi.vlm.backend`:

- ``template``: no model. Deterministic composition of the best retrieved description — the
  paper's fixed-prompt / RAG-only ablation, and the filter's fallback.
- ``transformers``: any local Qwen2.5-VL checkpoint through transformers (or ``tiny``: a random
  Qwen2.5-VL built in code, `tiny_vlm.py`); batched, left-padded generation.
- ``vllm``: Qwen2.5-VL-7B-Instruct through vLLM's offline multimodal chat API, inside the
  VLM actor's own runtime env (cluster/runtime_envs/vllm.yaml).

Sampling follows DESIGN: at most 256 new tokens, temperature 0.8, top_p 0.9, English.
"""
from __future__ import annotations

from argen_ray.errors import ArgenError

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np


class VLMError(ArgenError, RuntimeError):
    """A VLM backend cannot be built or run; the message names the backend and model."""


@dataclass
class VLMRequest:
    """One identity x emotion fusion request."""

    request_id: str
    image: np.ndarray                  # the identity frame, (H, W, 3) uint8 RGB
    emotion: str                       # canonical label, e.g. "fear"
    emotion_noun: str                  # how text names it, e.g. "fear", "happiness"
    descriptions: list[str] = field(default_factory=list)  # retrieved, best first
    seed: int = 0

    def __post_init__(self) -> None:
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise VLMError(f"request {self.request_id}: image must be (H, W, 3) uint8 RGB, "
                           f"got {img.shape} {img.dtype}")
        if not self.descriptions:
            raise VLMError(f"request {self.request_id}: no retrieved descriptions to fuse")


def instruction(request: VLMRequest) -> str:
    """The text part of the VLM's user turn."""
    listed = "\n".join(f"{i}. {d}" for i, d in enumerate(request.descriptions, 1))
    return (f"The photo shows a person's face at rest. First describe this person's appearance in a short "
            "phrase (apparent age, gender, hair, skin tone, distinctive features such as glasses or a beard). "
            f"Then write one or two English sentences describing how this same person's face changes to "
            f"express {request.emotion_noun}. Use only facial movements from these reference descriptions:\n"
            f"{listed}\nDo not mention any other facial movement, action-unit codes, the background or clothing.")


def template_text(request: VLMRequest) -> str:
    """Deterministic composition: the emotion and the first two retrieved descriptions (in sampled
    order, so identities differ in which variants lead and how they combine)."""
    return f"The person's face shows {request.emotion_noun}: {'; '.join(request.descriptions[:2])}."


def check_requests(requests: list[VLMRequest]) -> list[VLMRequest]:
    requests = list(requests)
    bad = [type(r).__name__ for r in requests if not isinstance(r, VLMRequest)]
    if bad:
        raise VLMError(f"VLM requests must be VLMRequest objects, got {bad[0]}")
    return requests


class VLMBackend(Protocol):
    name: str

    def generate(self, requests: list[VLMRequest]) -> list[str]: ...


class TemplateVLM:
    """No model: the fixed-prompt / RAG-only ablation."""

    name = "template"

    def __init__(self, **_unused):
        pass

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        return [template_text(r) for r in check_requests(requests)]


class TransformersVLM:
    """A local Qwen2.5-VL checkpoint (or ``tiny``) run with transformers' `generate`.

    Requests are processed in chunks of `batch_size`, left-padded. Sampling uses the torch
    generator seeded with the chunk's first request seed, so a rerun of the same chunk repeats.
    """

    name = "transformers"
    MODEL_CLASS_NAME = "Qwen2_5_VLForConditionalGeneration"  # the class `from_pretrained` builds

    @classmethod
    def model_class(cls):
        import transformers

        return getattr(transformers, cls.MODEL_CLASS_NAME)

    def __init__(self, model: str, max_new_tokens: int = 256, temperature: float = 0.8, top_p: float = 0.9,
                 batch_size: int = 8, device: str | None = None, **_unused):
        import torch

        from argen_ray.asi.qwen_vl import TINY_NAME, ensure_tiny_vlm, load_qwen_vl_processor

        path = str(ensure_tiny_vlm()) if model == TINY_NAME else str(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.processor = load_qwen_vl_processor(path)
            self.model = self.model_class().from_pretrained(path, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            where = "local folder" if Path(path).is_dir() else "not a local folder, and the hub is unreachable"
            raise VLMError(f"transformers VLM {model!r} ({where}): cannot load ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]})") from None
        self.processor.tokenizer.padding_side = "left"  # generation continues from the right end
        self.model_id = model
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.batch_size = max(1, batch_size)

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        requests = check_requests(requests)
        texts: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            texts.extend(self._generate_chunk(requests[start:start + self.batch_size]))
        return texts

    def _generate_chunk(self, chunk: list[VLMRequest]) -> list[str]:
        import torch
        from PIL import Image

        conversations = [[{"role": "user", "content": [
            {"type": "image", "image": Image.fromarray(np.asarray(r.image))},
            {"type": "text", "text": instruction(r)}]}] for r in chunk]
        inputs = self.processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            processor_kwargs={"padding": True}).to(self.device)
        torch.manual_seed(chunk[0].seed)
        sample = self.temperature > 0
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=sample,
                                      temperature=self.temperature if sample else None,
                                      top_p=self.top_p if sample else None)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


class VLLMVLM:
    """Qwen2.5-VL through vLLM's offline engine and its multimodal chat API (`LLM.chat`).

    Each request becomes one OpenAI-style conversation whose user turn holds an ``image_url``
    part (the identity frame as a base64 PNG data URL) and a text part; `LLM.chat` takes the
    list of conversations with one `SamplingParams` per request (its seed is the request's).

    How it was checked: vLLM cannot be installed here (CUDA-only wheel pinning torch 2.14 and
    transformers < 5.21; shared notes), so this code was written against vLLM's
    `vllm/entrypoints/llm.py` (`LLM.__init__` engine kwargs such as `limit_mm_per_prompt`,
    `LLM.chat(messages: list[list[message]], sampling_params: list[SamplingParams], use_tqdm)`)
    and its multimodal-input docs, and its request construction is exercised by the tests with
    a recording stand-in for `vllm.LLM` that checks those argument shapes. It runs inside the
    VLMActor's runtime env (cluster/runtime_envs/vllm.yaml) on a GPU node.
    """

    name = "vllm"

    def __init__(self, model: str, max_new_tokens: int = 256, temperature: float = 0.8, top_p: float = 0.9,
                 num_gpus: float = 1.0, max_model_len: int = 8192, gpu_memory_utilization: float = 0.9,
                 seed: int = 0, **_unused):
        try:
            import vllm
        except ImportError:
            raise VLMError("vllm backend: package vllm is not importable in this environment; run the "
                           "VLMActor with runtime env cluster/runtime_envs/vllm.yaml on a GPU node") from None
        self.vllm = vllm
        self.model_id = model
        self.llm = vllm.LLM(**self.engine_args(model, num_gpus, max_model_len, gpu_memory_utilization, seed))
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p

    @staticmethod
    def engine_args(model: str, num_gpus: float, max_model_len: int, gpu_memory_utilization: float,
                    seed: int) -> dict:
        """The keyword arguments of `vllm.LLM(...)` (its engine args), exactly as passed."""
        return {"model": model, "tensor_parallel_size": max(1, int(num_gpus)), "max_model_len": max_model_len,
                "gpu_memory_utilization": gpu_memory_utilization, "seed": seed, "limit_mm_per_prompt": {"image": 1}}

    def sampling_args(self, request: VLMRequest) -> dict:
        """The keyword arguments of `vllm.SamplingParams(...)` for one request, exactly as passed."""
        return {"max_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "seed": request.seed}

    @staticmethod
    def conversation(request: VLMRequest) -> list[dict]:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(request.image)).save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": instruction(request)}]}]

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        requests = check_requests(requests)
        params = [self.vllm.SamplingParams(**self.sampling_args(r)) for r in requests]
        outputs = self.llm.chat([self.conversation(r) for r in requests], sampling_params=params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]


VLM_BACKENDS: dict[str, Callable[..., VLMBackend]] = {
    TemplateVLM.name: TemplateVLM,
    TransformersVLM.name: TransformersVLM,
    VLLMVLM.name: VLLMVLM,
}


def build_vlm(cfg, seed: int = 0) -> VLMBackend:
    """The backend named by an `asi.vlm` config section (argen_ray.config.asi.VLMConfig)."""
    if cfg.backend not in VLM_BACKENDS:
        raise VLMError(f"unknown VLM backend {cfg.backend!r} (asi.vlm.backend); known: {', '.join(sorted(VLM_BACKENDS))}")
    options = cfg.model_dump(exclude={"backend", "use_ray", "runtime_env"})
    return VLM_BACKENDS[cfg.backend](seed=seed, **options)
