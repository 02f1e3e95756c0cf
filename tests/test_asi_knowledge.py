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
    # surprise 1+2+5B+26, with the 27 variant, each scored with the parted lips (25) FACS scores
    # with a jaw drop that opens the mouth; 5 at FACS level B reads "slightly"
    assert set(prototype_aus("surprise")) == {"AU01", "AU02", "AU05", "AU26"}
    assert {"AU01", "AU02", "AU05", "AU25", "AU26"} in record_sets("surprise")
    assert {"AU01", "AU02", "AU05", "AU25", "AU27"} in record_sets("surprise")
    assert all("AU25" in r for r in record_sets("surprise") if r & {"AU26", "AU27"})
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


# EMFACS-7 prototypes and major variants (Friesen & Ekman 1983, as reprinted in Matsumoto et al.
# 2008), written out here as the oracle; "x/y" alternatives expanded. 25 may accompany 26/27.
_EMFACS = {
    "happy": ["6+12", "12"],
    "sad": ["1+4+11+15", "1+4+15", "6+15", "1+4+11", "11+15", "11+17"],
    "surprise": ["1+2+5+26", "1+2+5+27", "1+2+5", "1+2+26", "1+2+27", "5+26", "5+27"],
    "fear": [f"{base}+{mouth}" for base in ("1+2+4+5+20", "1+2+4+5", "1+2+5", "5+20") for mouth in ("25", "26", "27")]
            + ["1+2+4+5+20", "1+2+4+5", "1+2+5", "5+20"],
    "disgust": ["9", "9+16+15", "9+16+26", "9+17", "10", "10+16+25", "10+16+26", "10+17"],
    "angry": ["4+5+7+10+22+23+25", "4+5+7+10+23+25", "4+5+7+23+25", "4+5+7+17+23", "4+5+7+17+24",
              "4+5+7+23", "4+5+7+24"],
}
# Du, Tao & Martinez (2014), Table 1: AUs observed in posed basic expressions (main + secondary).
_DU2014 = {"happy": {12, 25, 6}, "sad": {4, 15, 1, 6, 11, 17}, "fear": {1, 4, 20, 25, 2, 5, 26},
           "angry": {4, 7, 24, 10, 17, 23}, "surprise": {1, 2, 25, 26, 5}, "disgust": {9, 10, 17, 4, 24}}


def _numbers(aus) -> frozenset:
    return frozenset(int(a[2:]) for a in aus)


def test_every_record_matches_the_source_it_names():
    kb = load_knowledge_base()
    for name, entry in kb.emotions.items():
        for record in entry.records:
            aus = _numbers(record.aus)
            if record.source == "emfacs":
                combos = {frozenset(int(n) for n in c.split("+")) for c in _EMFACS[name]}
                assert aus in combos or (25 in aus and (aus - {25}) in combos and aus & {26, 27}), (name, sorted(aus))
            elif record.source == "du2014":
                assert aus <= _DU2014[name], (name, sorted(aus))
            else:
                assert record.source == "argen" and name in ("fear", "disgust", "surprise"), (name, record.source)


def test_scarce_emotions_carry_emfacs_mouth_variants():
    kb = load_knowledge_base()
    assert any({"AU27"} <= set(r.aus) and {"AU04", "AU20"} <= set(r.aus) for r in kb.emotion("fear").records)
    assert any("AU26" in r.aus and r.source == "emfacs" for r in kb.emotion("disgust").records)
    assert "AU27" in allowed_aus("fear") and "AU26" in allowed_aus("disgust") and "AU27" not in allowed_aus("disgust")


def test_adapted_record_takes_intensities_from_the_vector():
    kb = load_knowledge_base()
    record = next(r for r in kb.emotion("fear").records if r.source == "argen")
    adapted = kb.adapted(record, {"AU01": 0.9, "AU05": 0.0, "AU20": float("nan"), "AU12": 1.0})
    assert adapted.aus["AU01"] == 0.9 and adapted.aus["AU05"] == 0.05          # floor: still named
    assert adapted.aus["AU20"] == record.aus["AU20"] and "AU12" not in adapted.aus  # unread: KB value
    assert "strongly" in kb.render(adapted).split(" and ")[0] and kb.adapted(record, None) is record
