"""Hallucination filter (DESIGN 2.1.5): keep only facial actions the target emotion allows.

The VLM's text is split into clauses; each clause's asserted actions are read with the
knowledge base's phrase lexicon (and explicit AU tags such as "AU12"), skipping negated
mentions ("without smiling"). Clauses asserting an action outside the emotion's allowed AU set
are dropped, AU tags are stripped, and when no allowed action is left the template composition
is used instead. Hallucination rate = dropped / asserted (distinct AUs), per prompt and per run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from argen_ray.asi.knowledge import KnowledgeBase

# Clause boundaries: punctuation, bullets, subordinating connectives, and "and" where a new
# subject follows ("her eyes widen and she smiles"); "the inner and outer brows" stays whole.
_SUBJECT = r"(?:she|he|they|it|i|we|her|his|their|its|the|a|an|this|that)"
_CLAUSE_SPLIT = re.compile(
    r"([.;:!?\n]+|,|(?:^|\n)\s*[-*•]\s+"
    rf"|\s+(?:while|whereas|but|as well as|as|and then|with)\s+|\s+and\s+(?={_SUBJECT}\b))",
    re.IGNORECASE)
# AU tags: "AU12", "AU 4", "AU1+2+4", "AU1+AU2", "AUs 1/2".
_AU_NUMBER = r"(?:AU\s?)?0?\d{1,2}"
_AU_TAG = re.compile(rf"\bAUs?\s?0?\d{{1,2}}(?:\s*[+/&]\s*{_AU_NUMBER})*\b", re.IGNORECASE)
_TAG_NUMBER = re.compile(r"\d{1,2}")
# A tag with its brackets, list separators between tags and a trailing colon: removed from prompts.
_TAG_STRIP = re.compile(rf"\s*[\(\[]?\s*{_AU_TAG.pattern}(?:\s*(?:,|and)\s*{_AU_TAG.pattern})*\s*[\)\]]?\s*:?",
                        re.IGNORECASE)
_NEGATION_WORD = r"(?:\b(?:no|not|without|never|nor|neither|instead of|rather than)\b|n't\b)"
# A negation up to three words before a mention, within the same clause ("without smiling").
_NEGATION = re.compile(rf"{_NEGATION_WORD}(?:\s+[\w'-]+){{0,3}}\s*$", re.IGNORECASE)
# ... or inside a noun/verb mention ("her brows are not furrowed").
_NEGATED_SPAN = re.compile(_NEGATION_WORD, re.IGNORECASE)


def _asserts(match: re.Match, text: str) -> bool:
    return not (_NEGATION.search(text[:match.start()]) or _NEGATED_SPAN.search(match.group(0)))


@dataclass
class FilterResult:
    """What the filter did to one VLM output."""

    raw_text: str
    prompt: str
    asserted: list[str]
    kept: list[str]
    dropped: list[str]
    fell_back: bool

    @property
    def hallucination_rate(self) -> float:
        return len(self.dropped) / len(self.asserted) if self.asserted else 0.0


@dataclass
class FilterStats:
    """Run-level counts: the run's hallucination rate is dropped / asserted over all prompts."""

    prompts: int = 0
    asserted: int = 0
    dropped: int = 0
    fallbacks: int = 0
    dropped_by_au: dict[str, int] = field(default_factory=dict)

    def add(self, result: FilterResult) -> None:
        self.prompts += 1
        self.asserted += len(result.asserted)
        self.dropped += len(result.dropped)
        self.fallbacks += int(result.fell_back)
        for au in result.dropped:
            self.dropped_by_au[au] = self.dropped_by_au.get(au, 0) + 1

    @property
    def hallucination_rate(self) -> float:
        return self.dropped / self.asserted if self.asserted else 0.0

    def as_dict(self) -> dict:
        return {"prompts": self.prompts, "asserted": self.asserted, "dropped": self.dropped,
                "fallbacks": self.fallbacks, "hallucination_rate": self.hallucination_rate,
                "dropped_by_au": dict(sorted(self.dropped_by_au.items()))}


class HallucinationFilter:
    """Drops clauses asserting AUs outside an emotion's allowed set."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb

    def asserted_aus(self, text: str) -> set[str]:
        """AUs a piece of text asserts (negated mentions excluded), read clause by clause."""
        return set().union(*(self.clause_aus(c) for c in _CLAUSE_SPLIT.split(text or "")[0::2]))

    def clause_aus(self, text: str) -> set[str]:
        """AUs one clause asserts: a noun/verb pair never reaches across a clause boundary."""
        found: set[str] = set()
        for code, unit in self.kb.aus.items():
            if any(_asserts(m, text) for pattern in unit.phrases for m in pattern.finditer(text)):
                found.add(code)
        for m in _AU_TAG.finditer(text):
            if _asserts(m, text):
                found |= {f"AU{int(n):02d}" for n in _TAG_NUMBER.findall(m.group(0))}
        return found

    def apply(self, raw_text: str, emotion: str, fallback: str) -> FilterResult:
        allowed = self.kb.allowed_aus(emotion)
        pieces = _CLAUSE_SPLIT.split(raw_text or "")
        clauses, separators = pieces[0::2], pieces[1::2] + [""]
        asserted: set[str] = set()
        kept_parts: list[str] = []
        kept: set[str] = set()
        for clause, sep in zip(clauses, separators):
            aus = self.clause_aus(clause)
            asserted |= aus
            if aus - allowed:
                continue
            kept |= aus
            kept_parts.append(clause + sep)
        dropped = asserted - allowed
        prompt = _tidy(_TAG_STRIP.sub(" ", "".join(kept_parts)))
        fell_back = not kept
        if fell_back:
            prompt = fallback
        return FilterResult(raw_text=raw_text, prompt=prompt, asserted=sorted(asserted),
                            kept=sorted(self.asserted_aus(prompt) & allowed), dropped=sorted(dropped),
                            fell_back=fell_back)


_CONNECTIVE = r"(?:while|whereas|but|as|and then|and)"
_TIDY_RULES = [
    (re.compile(r"\s+"), " "),
    (re.compile(r"\s+([,.;:!?])"), r"\1"),
    (re.compile(r"[,;:]\s*(?=[,.;:!?])"), ""),                                  # ", ." -> "."
    (re.compile(rf"\b{_CONNECTIVE}\s*(?=[,.;:!?]|$)", re.IGNORECASE), ""),      # "while ." -> "."
    (re.compile(rf"^\s*(?:[,;:.!?]|\b{_CONNECTIVE}\b)\s*", re.IGNORECASE), ""),
    (re.compile(r"[,;:]\s*$"), ""),
]


def _tidy(text: str) -> str:
    """Whitespace, dangling separators and capitals left by removed clauses."""
    previous = None
    while text != previous:
        previous = text
        for pattern, repl in _TIDY_RULES:
            text = pattern.sub(repl, text).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- measured on a corpus
@dataclass
class CorpusScore:
    """The filter against hand labels: hallucinated AUs caught (precision/recall over
    (description, AU) pairs), and how many valid asserted AUs survive into the prompts."""

    descriptions: int = 0
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    valid_asserted: int = 0
    valid_kept: int = 0
    misses: list[tuple[str, list[str], list[str]]] = field(default_factory=list)  # (id, missed, wrongly dropped)

    @property
    def precision(self) -> float:
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positive + self.false_negative
        return self.true_positive / actual if actual else 1.0

    @property
    def valid_kept_rate(self) -> float:
        return self.valid_kept / self.valid_asserted if self.valid_asserted else 1.0


def load_labelled_corpus(path) -> list[dict]:
    """Items of a labelled corpus (tests/data/hallucination_corpus.yaml): id, emotion, style and
    sentences with their ground-truth `aus` and `hallucinated` AUs; `text` is added."""
    import yaml
    from pathlib import Path

    from argen_ray.errors import ArgenError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        items = data["items"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ArgenError(f"labelled corpus {path}: cannot read its items ({exc})") from None
    for item in items:
        joiner = "\n" if item.get("style") == "list" else " "
        item["text"] = joiner.join(s["text"] for s in item["sentences"])
    return items


def score_on_corpus(hfilter: HallucinationFilter, items: list[dict]) -> CorpusScore:
    """Run the filter on every labelled description and count hits against the labels."""
    score = CorpusScore()
    for item in items:
        truth_h = {au for s in item["sentences"] for au in s["hallucinated"]}
        truth_valid = {au for s in item["sentences"] for au in s["aus"]} - truth_h
        result = hfilter.apply(item["text"], item["emotion"], fallback="")
        dropped = set(result.dropped)
        score.descriptions += 1
        score.true_positive += len(dropped & truth_h)
        score.false_positive += len(dropped - truth_h)
        score.false_negative += len(truth_h - dropped)
        score.valid_asserted += len(truth_valid)
        score.valid_kept += len(truth_valid & set(result.kept))
        if dropped != truth_h:
            score.misses.append((item["id"], sorted(truth_h - dropped), sorted(dropped - truth_h)))
    return score
