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
