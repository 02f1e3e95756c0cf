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

# Clause boundaries: punctuation and the connectives the knowledge base's templates use.
_CLAUSE_SPLIT = re.compile(r"([.;:!?\n]+|,|\s+(?:while|whereas|but|as|and then)\s+)", re.IGNORECASE)
_AU_TAG = re.compile(r"\bAU\s?0?(\d{1,2})\b", re.IGNORECASE)
_TAG_STRIP = re.compile(r"\s*[\(\[]?\s*\bAU\s?\d{1,2}\b(?:\s*(?:[+,/&]|and)\s*AU\s?\d{1,2}\b)*\s*[\)\]]?\s*:?",
                        re.IGNORECASE)
# A negation up to three words before a mention, within the same clause ("without smiling").
_NEGATION = re.compile(r"(?:\b(?:no|not|without|never|nor|neither|instead of|rather than)\b|n't\b)"
                       r"(?:\s+[\w'-]+){0,3}\s*$", re.IGNORECASE)


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
        """AUs a piece of text asserts (negated mentions excluded)."""
        found: set[str] = set()
        for code, unit in self.kb.aus.items():
            for pattern in unit.phrases:
                if any(not _NEGATION.search(text[:m.start()]) for m in pattern.finditer(text)):
                    found.add(code)
                    break
        for m in _AU_TAG.finditer(text):
            if not _NEGATION.search(text[:m.start()]):
                found.add(f"AU{int(m.group(1)):02d}")
        return found

    def apply(self, raw_text: str, emotion: str, fallback: str) -> FilterResult:
        allowed = self.kb.allowed_aus(emotion)
        pieces = _CLAUSE_SPLIT.split(raw_text or "")
        clauses, separators = pieces[0::2], pieces[1::2] + [""]
        asserted: set[str] = set()
        kept_parts: list[str] = []
        kept: set[str] = set()
        for clause, sep in zip(clauses, separators):
            aus = self.asserted_aus(clause)
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
