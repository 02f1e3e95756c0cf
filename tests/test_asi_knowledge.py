"""The FACS knowledge base: DESIGN's prototypes, descriptions, sources, and clear errors."""
from __future__ import annotations

import pytest
import yaml

from argen_ray.asi.filter import HallucinationFilter
from argen_ray.asi.knowledge import (KB_FILE, KnowledgeBase, KnowledgeBaseError, adverb, allowed_aus,
                                     load_knowledge_base, prototype_aus)
from argen_ray.data.labels import EMOTIONS


def test_design_prototypes_of_the_scarce_classes():
    kb = load_knowledge_base()
    record_sets = lambda e: [set(r.aus) for r in kb.emotion(e).records]  # noqa: E731
    # surprise 1+2+5B+26, with the 27 variant; 5 at FACS level B reads "slightly"
    assert {"AU01", "AU02", "AU05", "AU26"} in record_sets("surprise")
    assert {"AU01", "AU02", "AU05", "AU27"} in record_sets("surprise")
    assert adverb(prototype_aus("surprise")["AU05"]) == "slightly"
    assert set(prototype_aus("fear")) == {"AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"}
    for variant in ({"AU09", "AU15", "AU16"}, {"AU09", "AU17"}, {"AU10", "AU17"}):
        assert variant in record_sets("disgust")
    assert "AU12" not in allowed_aus("fear") and "AU12" in allowed_aus("happy")
    assert allowed_aus("neutral") == set()


def test_every_emotion_and_au_is_described_with_sources():
    kb = load_knowledge_base()
    assert set(kb.emotions) == set(EMOTIONS)
    assert kb.aus["AU01"].description == "the inner corners of the eyebrows rise"
    assert {"facs2002", "emfacs", "du2014"} <= set(kb.sources)
    assert "Ekman" in kb.sources["facs2002"] and "PNAS" in kb.sources["du2014"]
    for entry in kb.emotions.values():
        for record in entry.records:
            assert record.source in kb.sources
            assert all(0 < v <= 1 for v in record.aus.values())


def test_rendered_records_assert_exactly_their_own_aus():
    # The filter's lexicon and the knowledge base agree: a template prompt is never filtered.
    kb = load_knowledge_base()
    parse = HallucinationFilter(kb).asserted_aus
    for entry in kb.emotions.values():
        for record in entry.records:
            text = kb.render(record)
            assert parse(text) == set(record.aus), text
    for code, unit in kb.aus.items():
        assert parse(unit.description) == {code}, code


def test_adverbs_follow_design_thresholds():
    assert [adverb(x) for x in (0.0, 0.32, 0.33, 0.65, 0.66, 1.0)] == \
        ["slightly", "slightly", "moderately", "moderately", "strongly", "strongly"]
    kb = load_knowledge_base()
    assert kb.describe({"AU09": 0.7, "AU17": 0.2}) == "the nose wrinkles upward strongly and the chin pushes up " \
                                                      "and the lower lip rises slightly"


def _broken_copy(tmp_path, edit):
    data = yaml.safe_load(KB_FILE.read_text())
    edit(data)
    path = tmp_path / "kb.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_malformed_knowledge_base_is_named(tmp_path):
    with pytest.raises(KnowledgeBaseError, match="missing.yaml does not exist"):
        KnowledgeBase.load(tmp_path / "missing.yaml")

    def unknown_au(d):
        d["emotions"]["fear"]["records"][0]["aus"]["AU99"] = 0.5

    with pytest.raises(KnowledgeBaseError, match="emotion fear record 0: AU99 has no entry under aus"):
        KnowledgeBase.load(_broken_copy(tmp_path, unknown_au))

    def template_mismatch(d):
        d["emotions"]["surprise"]["records"][0]["template"] = "{AU01} only"

    with pytest.raises(KnowledgeBaseError, match="surprise record 0: template names"):
        KnowledgeBase.load(_broken_copy(tmp_path, template_mismatch))

    def bad_intensity(d):
        d["emotions"]["disgust"]["prototype"]["AU09"] = 3

    with pytest.raises(KnowledgeBaseError, match="disgust prototype: AU09 intensity 3 must be a number in 0..1"):
        KnowledgeBase.load(_broken_copy(tmp_path, bad_intensity))

    def unknown_emotion(d):
        d["emotions"]["contempt"] = dict(d["emotions"]["disgust"])

    with pytest.raises(KnowledgeBaseError, match=r"emotions \['contempt'\] are not canonical"):
        KnowledgeBase.load(_broken_copy(tmp_path, unknown_emotion))
    with pytest.raises(KnowledgeBaseError, match="emotion 'joy' is not in the knowledge base"):
        allowed_aus("joy")
