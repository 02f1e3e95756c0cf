"""The miniature's training data (argen_ray/ard/miniature.py fits on it): clips rendered by the
demo renderer for people who are not the demo dataset's, and prompts composed as ASI composes
them, adapted to each clip's own AU vector so the text says how strongly the clip shows each AU
(what classifier-free guidance amplifies at sampling)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from argen_ray.io import atomic_path

FRAME_CLIP_FRAMES = 4       # frames per rendered clip of the single-frame pools (VAE, decoder): onset to apex


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------
def template_prompt(emotion: str, noun: str, descriptions: list[str]) -> str:
    """ASI's template composition of `descriptions`: "The person's face shows <noun>: <d1>; ..."."""
    from argen_ray.asi.vlm import VLMRequest, template_text

    image = np.zeros((8, 8, 3), np.uint8)  # the template ignores the image
    return template_text(VLMRequest(f"fit-{emotion}", image, emotion, noun, descriptions))


def emotion_prompts(emotion: str, kb=None) -> list[str]:
    """Every prompt ASI's template composition can give an emotion: "The person's face shows
    <noun>: <description>." over the knowledge base's records (neutral: its gloss)."""
    from argen_ray.asi.knowledge import load_knowledge_base

    kb = kb or load_knowledge_base()
    entry = kb.emotion(emotion)
    return [template_prompt(emotion, entry.noun, [d]) for d in [kb.render(r) for r in entry.records] or [entry.gloss]]


def composed_prompt(emotion: str, aus: dict[str, float], rng: np.random.Generator, kb=None) -> str:
    """ASI's template composition for one clip: "The person's face shows <noun>: <d1>; <d2>." over
    two of the emotion's knowledge-base records drawn at random, each adapted to the clip's AU
    vector `aus` (0-1 rise per AU, the paper's eq. 8), so its adverbs follow the clip's amplitude
    (neutral: its gloss)."""
    from argen_ray.asi.knowledge import load_knowledge_base

    kb = kb or load_knowledge_base()
    entry = kb.emotion(emotion)
    records = [entry.records[i] for i in rng.permutation(len(entry.records))[:2]]
    return template_prompt(emotion, entry.noun, [kb.render(kb.adapted(r, aus)) for r in records] or [entry.gloss])


def clip_au_vector(timeline) -> dict[str, float]:
    """A rendered clip's AU vector as ASI reads one from a real clip (`asi.pipeline.intensity_vectors`):
    the rise of each AU OpenFace reads over the clip (max - min), as a 0-1 fraction."""
    from argen_ray.asi.au import AU_NAMES
    from argen_ray.data.demo.au_model import MAX_INTENSITY, MODELLED_AUS

    values = np.asarray(timeline.intensities, np.float64)
    rise = (values.max(axis=0) - values.min(axis=0)) / MAX_INTENSITY
    return {name: round(float(v), 3) for au, v in zip(MODELLED_AUS, rise) if (name := f"AU{au:02d}") in AU_NAMES}


def prompt_words() -> list[str]:
    """The words of every training prompt, so the tokenizer gives each one token."""
    import re

    from argen_ray.data.labels import EMOTIONS

    return sorted({w for e in EMOTIONS for p in emotion_prompts(e) for w in re.findall(r"[a-z]+", p.lower())})


# ---------------------------------------------------------------------------------------------
# Training data: clips rendered by the demo renderer
# ---------------------------------------------------------------------------------------------
@dataclass
class ClipPool:
    frames: np.ndarray          # (N, F, S, S, 3) uint8
    emotions: list[str]         # per clip
    aus: list[dict[str, float]]  # per clip: its AU vector (`clip_au_vector`), what "clip" prompts describe
    by_emotion: dict[str, list[str]]  # per emotion: `emotion_prompts`, the "emotion" prompts

    @classmethod
    def load_or_render(cls, fit, cache: Path, progress: bool = True) -> "ClipPool":
        """The pool of `fit`, read from `cache` (an .npz the first call writes) when it is there."""
        fields = ("identity_seed", "num_identities", "clips_per_emotion", "clip_frames", "size") + (
            ("head_sway",) if fit.head_sway != 1.0 else ())  # caches written before the setting stay valid
        key = json.dumps({k: getattr(fit, k) for k in fields}, sort_keys=True)
        if cache.is_file():
            with np.load(cache) as stored:
                if str(stored["key"]) == key:
                    return cls.of(fit, stored["frames"])
        pool = cls.render(fit, progress)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, suffix=".npz") as tmp:
            np.savez(tmp, frames=pool.frames, emotions=np.array(pool.emotions), key=np.array(key))
        return pool

    @classmethod
    def render(cls, fit, progress: bool = True) -> "ClipPool":
        """Every (identity, emotion) pair `fit.clips_per_emotion` times; deterministic in the fit's
        seeds, so a resumed fit renders the same pool."""
        from tqdm.auto import tqdm

        from argen_ray.data.demo.clips import make_identities, synthesize_clip

        identities = make_identities(fit.identity_seed, fit.num_identities)
        plans = pool_plans(fit)
        frames = np.empty((len(plans), fit.clip_frames, fit.size, fit.size, 3), np.uint8)
        for n, plan in enumerate(tqdm(plans, desc="render training clips", disable=not progress)):
            frames[n] = synthesize_clip(plan, identities[plan.identity], fit.identity_seed, fit.clip_frames,
                                        fit.size, fit.head_sway).frames
        return cls.of(fit, frames)

    @classmethod
    def of(cls, fit, frames: np.ndarray) -> "ClipPool":
        """The pool of `fit`'s clips (`pool_plans`) with their rendered frames."""
        from argen_ray.data.labels import EMOTIONS

        plans = pool_plans(fit)
        return cls(frames, [p.emotion for p in plans], [plan_au_vector(p, fit) for p in plans],
                   {e: emotion_prompts(e) for e in EMOTIONS})

    def prompt(self, clip: int, rng: np.random.Generator, per_clip: bool) -> str:
        """A training prompt of `clip`: adapted to its AU vector (`per_clip`, generator.fit.prompts
        "clip"), or one of its emotion's knowledge-base prompts ("emotion")."""
        if per_clip:
            return composed_prompt(self.emotions[clip], self.aus[clip], rng)
        options = self.by_emotion[self.emotions[clip]]
        return options[int(rng.integers(len(options)))]


def pool_plans(fit) -> list:
    """Every (identity, emotion) pair `fit.clips_per_emotion` times; a clip's id depends only on
    its identity, repeat and emotion, so a larger pool starts with a smaller one's clips."""
    from argen_ray.data.demo.clips import ClipPlan
    from argen_ray.data.labels import EMOTIONS

    return [ClipPlan(clip_id=1 + len(EMOTIONS) * fit.clips_per_emotion * i + len(EMOTIONS) * k + j, identity=i,
                     emotion=e, fold=0)
            for i in range(fit.num_identities) for k in range(fit.clips_per_emotion) for j, e in enumerate(EMOTIONS)]


def plan_au_vector(plan, fit) -> dict[str, float]:
    """The AU vector of a pool clip, from its AU timeline (cheap: no rendering)."""
    from argen_ray.data.demo.clips import clip_timeline

    return clip_au_vector(clip_timeline(plan, fit.identity_seed, fit.clip_frames))


def training_window(rng: np.random.Generator, clip_frames: int, window: int, static_prefix: float,
                    stride: int = 1) -> np.ndarray:
    """Frame indices of one training window: `window` frames `stride` apart, or (with probability
    `static_prefix`) one frame held for k frames and then the frames that follow it, `stride` apart."""
    start = int(rng.integers(0, clip_frames - (window - 1) * stride))  # drawn first, as the shipped fit drew it
    if rng.random() >= static_prefix:
        return start + stride * np.arange(window)
    held = int(rng.integers(1, window))
    start = int(rng.integers(0, clip_frames - (window - held) * stride))
    return np.concatenate([np.full(held, start), start + stride * np.arange(1, 1 + window - held)])


def frame_pool_settings(fit, identities: int):
    """A single-frame pool (the VAE's, the decoder phase's): `identities` people (a prefix-stable
    draw, so the first `num_identities` are the UNet pool's), every emotion, FRAME_CLIP_FRAMES
    frames each."""
    return fit.model_copy(update={"num_identities": identities, "clip_frames": FRAME_CLIP_FRAMES})
