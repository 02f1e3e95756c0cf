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
    aus: dict[str, float] = field(default_factory=dict)  # target AU intensities (OpenFace 0-5)
    num_frames: int | None = None     # F including the reference; None: the backend's config
    request_id: str = ""


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


GENERATOR_BACKENDS: dict[str, Callable[..., GeneratorBackend]] = {}


def register_generator(name: str):
    """Class/factory decorator: make a backend buildable by `build_generator(cfg)` by name."""

    def wrap(factory):
        GENERATOR_BACKENDS[name] = factory
        return factory

    return wrap


def build_generator(cfg) -> GeneratorBackend:
    """Build the backend named by `cfg.backend` (a `GeneratorConfig`)."""
    # Backends register on import; importing them here keeps `build_generator` the one entry point.
    import importlib

    for module in ("argen_ray.ard.ti2v", "argen_ray.ard.warp"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    if cfg.backend not in GENERATOR_BACKENDS:
        raise ArgenError(f"generator.backend: unknown backend {cfg.backend!r}; known: {sorted(GENERATOR_BACKENDS)}")
    return GENERATOR_BACKENDS[cfg.backend](cfg)
