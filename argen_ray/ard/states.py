"""The policy's states: one per row of `prompts.jsonl` (an identity image and its prompt).

A state carries the reference image, the prompt row (for generation and traceability) and
its embeddings (E_t(c), E_r(r)) from a registered state encoder:

- "generator": the generator's own text and image encoders (the paper), through any object
  with `encode_state(prompts, images)` and `model_id` (a backend or the generator actor pool);
- "minilm": the ASI sentence embedder (packaged all-MiniLM-L6-v2) for the prompt and a colour
  thumbnail of the image (no generator needed).

Embeddings are computed once per (encoder, prompt rows) and cached in an `.npz` beside the
policy, so reruns and Tune trials skip the encoder.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from argen_ray.errors import ArgenError

REQUIRED_FIELDS = ("prompt_id", "image", "prompt")
ENCODE_BATCH = 32


class StateError(ArgenError):
    """prompts.jsonl is missing or malformed, or the state encoder cannot run."""


@dataclass
class StateSet:
    rows: list[dict]              # prompts.jsonl rows (prompt_id, image, prompt, emotion, aus, seed, ...)
    images: list[np.ndarray]      # reference images, (H, W, 3) uint8
    text_emb: np.ndarray          # (N, Dt) float32
    image_emb: np.ndarray         # (N, Di) float32
    encoder_id: str

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices: Sequence[int]) -> "StateSet":
        idx = [int(i) for i in indices]
        return StateSet([self.rows[i] for i in idx], [self.images[i] for i in idx],
                        self.text_emb[idx], self.image_emb[idx], self.encoder_id)

    def split(self, num_heldout: int, seed: int) -> tuple["StateSet", "StateSet"]:
        """(train, held-out): a seeded split; held-out states never reach the learner."""
        if num_heldout and num_heldout >= len(self):
            raise StateError(f"train.eval_states={num_heldout} leaves no training state out of {len(self)} prompts")
        order = np.random.default_rng(seed).permutation(len(self))
        return self.subset(sorted(order[num_heldout:])), self.subset(sorted(order[:num_heldout]))


# ---------------------------------------------------------------------------------------------
# prompts.jsonl
# ---------------------------------------------------------------------------------------------
def read_prompt_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of prompts.jsonl, each checked for the fields training needs."""
    from argen_ray.io import read_jsonl

    path = Path(path)
    if not path.is_file():
        raise StateError(f"{path} does not exist: run `argen-ray prompts` first (same --config)")
    try:
        rows = read_jsonl(path)
    except ValueError as exc:
        raise StateError(str(exc)) from None
    if not rows:
        raise StateError(f"{path} holds no prompts")
    seen: set[str] = set()
    for line, row in enumerate(rows, 1):
        missing = [f for f in REQUIRED_FIELDS if not isinstance(row, dict) or row.get(f) in (None, "")]
        if missing:
            raise StateError(f"{path}: row {line} lacks {', '.join(missing)}")
        if str(row["prompt_id"]) in seen:
            raise StateError(f"{path}: row {line} repeats prompt_id {row['prompt_id']!r}")
        seen.add(str(row["prompt_id"]))
    return rows


def resolve_image(row: dict, prompts_path: Path) -> Path:
    """A row's image path: absolute, else relative to prompts.jsonl's folder, else to the cwd."""
    image = Path(row["image"])
    for candidate in ([image] if image.is_absolute() else [prompts_path.parent / image, image]):
        if candidate.is_file():
            return candidate
    raise StateError(f"{prompts_path}: prompt {row['prompt_id']!r}: image {row['image']} does not exist")


# ---------------------------------------------------------------------------------------------
# State encoders: name -> factory(cfg, generator)
# ---------------------------------------------------------------------------------------------
class StateEncoder(Protocol):
    encoder_id: str

    def encode(self, prompts: list[str], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(text embeddings (B, Dt), image embeddings (B, Di)), float32."""


class GeneratorStateEncoder:
    """E_t and E_r of the generator itself (its text encoder and image/VAE encoder)."""

    def __init__(self, cfg, generator=None):
        if generator is None:
            raise StateError("train.state_encoder='generator' needs the generator (backend or actor pool)")
        self.generator = generator
        self.encoder_id = f"generator:{cfg.generator.backend}:{generator.model_id}"

    def encode(self, prompts, images):
        return self.generator.encode_state(list(prompts), list(images))


class MiniLMStateEncoder:
    """The ASI sentence embedder (`asi.embedder`, MiniLM by default) for the prompt; an 8x8
    colour thumbnail for the image."""

    THUMB = 8

    def __init__(self, cfg, generator=None):
        from argen_ray.asi.retrieval import load_embedder

        self.embedder = load_embedder(cfg.asi.embedder)
        self.encoder_id = f"minilm:{cfg.asi.embedder}+thumb{self.THUMB}"

    def encode(self, prompts, images):
        from PIL import Image

        thumbs = [np.asarray(Image.fromarray(img).resize((self.THUMB, self.THUMB), Image.BILINEAR), np.float32)
                  for img in images]
        return self.embedder.encode(list(prompts)), (np.stack(thumbs).reshape(len(thumbs), -1) - 127.5) / 127.5


STATE_ENCODERS: dict[str, Callable[..., StateEncoder]] = {
    "generator": GeneratorStateEncoder,
    "minilm": MiniLMStateEncoder,
}


def build_state_encoder(cfg, generator=None) -> StateEncoder:
    name = cfg.train.state_encoder
    if name not in STATE_ENCODERS:
        raise StateError(f"train.state_encoder: unknown encoder {name!r}; known: {sorted(STATE_ENCODERS)}")
    return STATE_ENCODERS[name](cfg, generator)


# ---------------------------------------------------------------------------------------------
# Loading with the embedding cache
# ---------------------------------------------------------------------------------------------
def _cache_key(encoder_id: str, rows: list[dict], images: list[Path]) -> str:
    h = hashlib.sha256(encoder_id.encode())
    for row, image in zip(rows, images):
        # The row's own image name (relative to prompts.jsonl): a run folder moved or copied
        # elsewhere keeps its cache.
        h.update(json.dumps([str(row["prompt_id"]), row["prompt"], str(row["image"]), image.stat().st_size,
                             image.stat().st_mtime_ns]).encode())
    return h.hexdigest()[:16]


def load_states(cfg, encoder: StateEncoder, prompts_path: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, progress: bool = False) -> StateSet:
    """Read prompts.jsonl, load the reference images, and embed every state (cached)."""
    from tqdm.auto import tqdm

    from argen_ray.data.video import read_image
    from argen_ray.io import atomic_path

    prompts_path = Path(prompts_path or cfg.path("prompts", "prompts.jsonl"))
    rows = read_prompt_rows(prompts_path)
    if cfg.train.max_states:
        rows = rows[:cfg.train.max_states]
    image_paths = [resolve_image(row, prompts_path) for row in rows]
    images = [read_image(p) for p in image_paths]
    cache = Path(cache_dir or cfg.path("policy")) / f"states-{_cache_key(encoder.encoder_id, rows, image_paths)}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return StateSet(rows, images, data["text_emb"], data["image_emb"], encoder.encoder_id)
    text_parts, image_parts = [], []
    with tqdm(total=len(rows), desc="encoding states", unit="state", disable=not progress) as bar:
        for start in range(0, len(rows), ENCODE_BATCH):
            chunk = slice(start, start + ENCODE_BATCH)
            text, image = encoder.encode([r["prompt"] for r in rows[chunk]], images[chunk])
            text_parts.append(np.asarray(text, np.float32))
            image_parts.append(np.asarray(image, np.float32).reshape(len(text), -1))
            bar.update(len(text))
    text_emb, image_emb = np.concatenate(text_parts), np.concatenate(image_parts)
    if len(text_emb) != len(rows) or not (np.isfinite(text_emb).all() and np.isfinite(image_emb).all()):
        raise StateError(f"state encoder {encoder.encoder_id} returned {len(text_emb)} embeddings for "
                         f"{len(rows)} prompts, or non-finite values")
    with atomic_path(cache) as tmp:
        np.savez(tmp, text_emb=text_emb, image_emb=image_emb)
    return StateSet(rows, images, text_emb, image_emb, encoder.encoder_id)
