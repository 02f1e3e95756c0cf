"""Hallucination filter: actions outside the emotion's allowed set are dropped and counted."""
from __future__ import annotations

import pytest

from argen_ray.asi.filter import FilterStats, HallucinationFilter
from argen_ray.asi.knowledge import allowed_aus, load_knowledge_base


@pytest.fixture(scope="module")
def filt():
    return HallucinationFilter(load_knowledge_base())


def test_smile_in_a_fear_prompt_is_dropped_and_counted(filt):
    raw = "Her eyebrows shoot up, her eyes widen in alarm, and she smiles broadly (AU12)."
    result = filt.apply(raw, "fear", fallback="FALLBACK")
    assert result.dropped == ["AU12"]
    assert result.asserted == ["AU01", "AU02", "AU05", "AU12"]
    assert result.hallucination_rate == pytest.approx(1 / 4)
    assert "smile" not in result.prompt.lower() and "AU12" not in result.prompt
    assert result.prompt == "Her eyebrows shoot up, her eyes widen in alarm."
    assert set(result.kept) <= allowed_aus("fear") and not result.fell_back


def test_nothing_valid_left_falls_back_to_the_template(filt):
    result = filt.apply("She grins and her cheeks lift.", "fear", fallback="The person's face shows fear: x.")
    assert result.fell_back and result.prompt == "The person's face shows fear: x."
    assert result.dropped == ["AU06", "AU12"] and result.hallucination_rate == 1.0
    assert filt.apply("", "surprise", fallback="F").fell_back


def test_negated_mentions_are_not_assertions(filt):
    result = filt.apply("His brows rise high without smiling, and his mouth falls open.", "surprise", "F")
    assert result.dropped == [] and "AU12" not in result.asserted
    assert result.kept == ["AU01", "AU02", "AU26"]
    # a negation does not reach past the clause it is in
    assert "AU26" in filt.asserted_aus("He does not smile, and his jaw drops.")


def test_au_tags_assert_actions_and_are_stripped(filt):
    result = filt.apply("The eyes widen (AU5) while the lips stretch sideways; AU05 and AU20.", "fear", "F")
    assert result.prompt == "The eyes widen while the lips stretch sideways."
    assert result.kept == ["AU05", "AU20"] and result.dropped == []
    tagged = filt.apply("AU12: the corners of the mouth turn up. The nose wrinkles.", "disgust", "F")
    assert tagged.dropped == ["AU12"] and tagged.prompt == "The nose wrinkles."


def test_run_rate_is_dropped_over_asserted(filt):
    stats = FilterStats()
    stats.add(filt.apply("The nose wrinkles and the upper lip curls, while the cheeks lift.", "disgust", "F"))
    stats.add(filt.apply("The brows rise and the jaw drops.", "surprise", "F"))
    assert (stats.asserted, stats.dropped) == (3 + 3, 1)
    assert stats.hallucination_rate == pytest.approx(1 / 6)
    assert stats.as_dict()["dropped_by_au"] == {"AU06": 1}


# --------------------------------------------------------------------------- issue 16 findings
def test_mouth_opening_wide_is_allowed_for_fear(filt):
    # EMFACS fear takes 25, 26 or 27: a wide-open mouth in terror is not a hallucination.
    result = filt.apply("Her mouth opens wide in terror.", "fear", fallback="F")
    assert result.asserted == ["AU27"] and result.dropped == [] and not result.fell_back


def test_and_splits_clauses_so_valid_actions_survive(filt):
    result = filt.apply("Her eyes widen and she smiles nervously.", "fear", fallback="F")
    assert result.dropped == ["AU12"] and result.kept == ["AU05"]
    assert result.prompt == "Her eyes widen." and not result.fell_back
    # "and" between two modifiers of one noun is not a clause boundary
    assert filt.asserted_aus("raised and knitted brows") == {"AU01", "AU02", "AU04"}


@pytest.mark.parametrize("text, au", [("his nostrils flare", "AU38"), ("he bites his lower lip", "AU32"),
                                      ("her eyebrows arched", "AU01"), ("her mouth opens wide", "AU27"),
                                      ("wrinkling her nose", "AU09"), ("the lips are drawn back horizontally", "AU20")])
def test_lexicon_covers_common_phrasings(filt, text, au):
    assert au in filt.asserted_aus(text)


def test_au_tags_with_plus_chains_are_read_and_stripped(filt):
    result = filt.apply("AU1+2+4: The brows lift and pull together. AU5+7: The upper lids rise.", "fear", "F")
    assert {"AU01", "AU02", "AU04", "AU05", "AU07"} <= set(result.asserted) and result.dropped == []
    assert "AU" not in result.prompt and "+" not in result.prompt and not result.prompt.startswith(":")
    assert result.prompt.startswith("The brows lift")
    assert filt.asserted_aus("(AU1+AU2) raised") == {"AU01", "AU02"}


def test_filter_on_the_labelled_corpus():
    # tests/data/hallucination_corpus.yaml: hand-labelled, per-sentence AUs and hallucinations.
    from pathlib import Path

    from argen_ray.asi.filter import load_labelled_corpus, score_on_corpus

    items = load_labelled_corpus(Path(__file__).parent / "data" / "hallucination_corpus.yaml")
    assert len(items) >= 80 and {i["emotion"] for i in items} == {"surprise", "disgust", "fear"}
    assert len({i["style"] for i in items}) >= 5
    allowed = {"surprise": {"AU01", "AU02", "AU05", "AU25", "AU26", "AU27"},
               "fear": {"AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU25", "AU26", "AU27"},
               "disgust": {"AU09", "AU10", "AU15", "AU16", "AU17", "AU25", "AU26"}}
    for item in items:  # the labels agree with the oracle's allowed sets (EMFACS, DESIGN)
        for sentence in item["sentences"]:
            assert set(sentence["hallucinated"]) == set(sentence["aus"]) - allowed[item["emotion"]], item["id"]
    hfilter = HallucinationFilter(load_knowledge_base())
    overall = score_on_corpus(hfilter, items)
    heldout = score_on_corpus(hfilter, [i for i in items if i.get("split") == "heldout"])
    print(f"corpus precision {overall.precision:.3f} recall {overall.recall:.3f}; held-out precision "
          f"{heldout.precision:.3f} recall {heldout.recall:.3f}")
    assert overall.true_positive + overall.false_negative >= 40
    assert overall.precision >= 0.9 and overall.recall >= 0.8
    assert heldout.precision >= 0.9 and heldout.recall >= 0.8
    assert overall.valid_kept_rate >= 0.85
