"""The generator interface every backend implements, and the registry of backends.

A backend turns (reference image, prompt, target AUs, steps T, per-frame guidance w_n, seed)
into a video whose first frame is the reference; it reports its cost (NFE) so the policy's
efficiency reward and the reports mean the same thing for every backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from argen_ray.errors import ArgenError


@dataclass
class GenerationRequest:
    image: np.ndarray                 # (H, W, 3) uint8 RGB reference (identity) frame
    prompt: str
    steps: int                        # T_a chosen by the policy (or fixed)
    guidance: np.ndarray | float      # w_n per generated frame (length N) or one constant
    seed: int = 0
    emotion: str | None = None
    # Target AU intensities as 0-1 fractions of each AU's maximum, as prompts.jsonl carries them
    # (from the retrieved records or the emotion's prototype); a backend maps them onto its own
    # scale (warp: times generator.warp.au_scale onto OpenFace's 0-5).
    aus: dict[str, float] = field(default_factory=dict)
    num_frames: int | None = None     # F including the reference; None: the backend's config
    request_id: str = ""
    # r resample passes per step (TI2V-Zero), e.g. a baseline at r = 4 beside policy candidates at
    # the configured r; None: the backend's config (generator.resample). Backends without
    # resampling (warp) ignore it.
    resample: int | None = None


@dataclass
class GenerationResult:
    frames: np.ndarray                # (F, H, W, 3) uint8; frames[0] is the reference
    nfe: int                          # network (or solver) evaluations spent on this video
    timings: dict[str, float]         # seconds per phase
    model_id: str
    request_id: str = ""


class GeneratorBackend(Protocol):
    model_id: str

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Generate one video per request; backends batch requests where they can."""

    def encode_state(self, prompts: list[str], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Policy state: (text embeddings (B, Dt), image embeddings (B, Di)) as float32."""


# Built-in backends by module: a backend's module (and its heavy imports: torch and diffusers
# for "ti2v") is imported only when that backend is built, so "warp" never loads diffusers.
BACKEND_MODULES: dict[str, str] = {
    "ti2v": "argen_ray.ard.ti2v",
    "warp": "argen_ray.ard.warp",
}

# Backends whose module has been imported (filled by `register_generator`).
GENERATOR_BACKENDS: dict[str, Callable[..., GeneratorBackend]] = {}


def register_generator(name: str):
    """Class/factory decorator: make a backend buildable by `build_generator(cfg)` by name.

    A built-in backend's module is also listed in `BACKEND_MODULES`, so it is imported on demand.
    """

    def wrap(factory):
        GENERATOR_BACKENDS[name] = factory
        return factory

    return wrap


def known_backends() -> list[str]:
    """Every backend name `build_generator` accepts (imports nothing)."""
    return sorted(set(BACKEND_MODULES) | set(GENERATOR_BACKENDS))


def build_generator(cfg) -> GeneratorBackend:
    """Build the backend named by `cfg.backend` (a `GeneratorConfig`), importing only its module."""
    name = cfg.backend
    if name not in GENERATOR_BACKENDS and name in BACKEND_MODULES:
        import importlib

        module = BACKEND_MODULES[name]
        try:
            importlib.import_module(module)  # registers the backend
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    if name not in GENERATOR_BACKENDS:
        raise ArgenError(f"generator.backend: unknown backend {name!r}; known: {known_backends()}")
    return GENERATOR_BACKENDS[name](cfg)
