"""The FACS knowledge base (DESIGN 2.1.2): AU descriptions, emotion prototypes and variants.

The data lives in `facs_kb.yaml` beside this module, with its sources (FACS 1978/2002, EMFACS,
Du et al. 2014). Records are `(AU set with intensities, emotion, description template)`;
intensities are fractions of the maximum (0-1, times 5 for OpenFace's scale). The allowed AU set
of an emotion (`allowed_aus`) is the union of its records' AUs: the hallucination filter drops
any asserted action outside it, and the warp generator animates `prototype_aus`.
"""
from __future__ import annotations

from argen_ray.errors import ArgenError

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

KB_FILE = Path(__file__).with_name("facs_kb.yaml")

# DESIGN 2.1.3: intensity -> adverb thresholds.
ADVERBS: list[tuple[float, str]] = [(0.33, "slightly"), (0.66, "moderately"), (float("inf"), "strongly")]


class KnowledgeBaseError(ArgenError, ValueError):
    """The knowledge base file is malformed, or an emotion/AU is not in it."""


def adverb(intensity: float) -> str:
    """< 0.33 slightly, < 0.66 moderately, else strongly (intensity as a 0-1 fraction)."""
    return next(word for limit, word in ADVERBS if intensity < limit)


@dataclass(frozen=True)
class ActionUnit:
    code: str                       # "AU01"
    name: str                       # FACS name, "Inner Brow Raiser"
    description: str                # what a viewer sees, "the inner corners of the eyebrows rise"
    phrases: tuple[re.Pattern, ...]  # how free text asserts it (phrases and noun/verb pairs)

    def describe(self, intensity: float | None = None) -> str:
        return self.description if intensity is None else f"{self.description} {adverb(intensity)}"


@dataclass(frozen=True)
class KBRecord:
    emotion: str
    aus: dict[str, float]
    template: str
    source: str


@dataclass(frozen=True)
class EmotionEntry:
    name: str
    noun: str                       # how text names it: "fear", "happiness"
    gloss: str
    prototype: dict[str, float]
    records: tuple[KBRecord, ...]

    @property
    def allowed(self) -> set[str]:
        found = set(self.prototype)
        for rec in self.records:
            found |= set(rec.aus)
        return found


_PLACEHOLDER = re.compile(r"\{(AU\d\d)\}")


class KnowledgeBase:
    """A loaded, validated FACS knowledge base."""

    def __init__(self, aus: dict[str, ActionUnit], emotions: dict[str, EmotionEntry],
                 sources: dict[str, str], path: Path):
        self.aus, self.emotions, self.sources, self.path = aus, emotions, sources, path

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "KnowledgeBase":
        import yaml

        path = Path(path) if path is not None else KB_FILE
        if not path.is_file():
            raise KnowledgeBaseError(f"knowledge base {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise KnowledgeBaseError(f"knowledge base {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or not {"aus", "emotions", "sources"} <= set(data):
            raise KnowledgeBaseError(f"knowledge base {path} must have top-level keys aus, emotions, sources")
        sources = {s["key"]: s["cite"] for s in data["sources"]}
        window = data.get("pair_window", 6)
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise KnowledgeBaseError(f"knowledge base {path}: pair_window must be a whole number >= 0, got {window!r}")
        aus = {code: _parse_au(path, code, entry, window) for code, entry in data["aus"].items()}
        emotions = {name: _parse_emotion(path, name, entry, aus, sources)
                    for name, entry in data["emotions"].items()}
        _check_emotion_names(path, emotions)
        return cls(aus, emotions, sources, path)

    def emotion(self, name: str) -> EmotionEntry:
        if name not in self.emotions:
            raise KnowledgeBaseError(f"emotion {name!r} is not in the knowledge base {self.path.name} "
                                     f"(known: {', '.join(self.emotions)})")
        return self.emotions[name]

    def allowed_aus(self, emotion: str) -> set[str]:
        return self.emotion(emotion).allowed

    def prototype_aus(self, emotion: str) -> dict[str, float]:
        return dict(self.emotion(emotion).prototype)

    def render(self, record: KBRecord) -> str:
        """A record's template with every {AUxx} replaced by its description and adverb."""
        return _PLACEHOLDER.sub(lambda m: self.aus[m.group(1)].describe(record.aus[m.group(1)]),
                                record.template)

    def adapted(self, record: KBRecord, vector: dict[str, float] | None) -> KBRecord:
        """The record with its intensities taken from an AU intensity vector (the paper's eq. 8:
        each candidate is adjusted by the intensity vector read from the scarce subset).

        `vector` maps AU codes to 0-1 intensities; AUs it does not read (or reads as NaN) keep the
        record's knowledge-base intensity. Intensities are clipped to [0.05, 1] so an AU the record
        names is never described as absent."""
        if not vector:
            return record
        aus = {}
        for code, default in record.aus.items():
            value = vector.get(code)
            aus[code] = default if value is None or not value == value else float(min(1.0, max(0.05, value)))
        return KBRecord(record.emotion, aus, record.template, record.source)

    def describe(self, aus: dict[str, float]) -> str:
        """Plain composition of AU descriptions: "a, b and c" (used where no template applies)."""
        parts = [self.aus[code].describe(value) for code, value in aus.items() if code in self.aus]
        if len(parts) <= 1:
            return "".join(parts)
        return ", ".join(parts[:-1]) + " and " + parts[-1]


def _parse_au(path: Path, code: str, entry: dict, window: int) -> ActionUnit:
    if not re.fullmatch(r"AU\d\d", str(code)):
        raise KnowledgeBaseError(f"{path}: AU key {code!r} must look like AU01")
    missing = {"name", "description"} - set(entry or {})
    if missing or not (entry.get("phrases") or entry.get("pairs")):
        raise KnowledgeBaseError(f"{path}: {code} lacks {sorted(missing) or ['phrases or pairs']}")
    sources = list(entry.get("phrases") or [])
    for pair in entry.get("pairs") or []:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise KnowledgeBaseError(f"{path}: {code} pair {pair!r} must be [nouns, verbs]")
        sources.append(_pair_regex(*pair, window))
    patterns = []
    for phrase in sources:
        try:
            patterns.append(re.compile(rf"\b(?:{phrase})\b", re.IGNORECASE))
        except re.error as exc:
            raise KnowledgeBaseError(f"{path}: {code} phrase {phrase!r} is not a valid regex ({exc})") from None
    return ActionUnit(code, entry["name"], entry["description"], tuple(patterns))


def _pair_regex(nouns: str, verbs: str, window: int) -> str:
    """A noun and a verb with at most `window` words between them, in either order: the many ways
    text says one movement ("nose wrinkles", "wrinkling her nose", "nose is wrinkled")."""
    gap = rf"(?:[\s-]+[\w'’]+){{0,{window}}}?[\s-]+"
    return rf"(?:{nouns})\b{gap}(?:{verbs})|(?:{verbs})\b{gap}(?:{nouns})"


def _parse_emotion(path: Path, name: str, entry: dict, aus: dict[str, ActionUnit],
                   sources: dict[str, str]) -> EmotionEntry:
    where = f"{path}: emotion {name}"
    prototype = _check_intensities(where + " prototype", entry.get("prototype") or {}, aus)
    records = []
    for i, raw in enumerate(entry.get("records") or []):
        rwhere = f"{where} record {i}"
        rec_aus = _check_intensities(rwhere, raw.get("aus") or {}, aus)
        if not rec_aus:
            raise KnowledgeBaseError(f"{rwhere}: has no AUs")
        template = raw.get("template") or " and ".join(f"{{{code}}}" for code in rec_aus)
        named = set(_PLACEHOLDER.findall(template))
        if named != set(rec_aus):
            raise KnowledgeBaseError(f"{rwhere}: template names {sorted(named)} but the record's AUs are "
                                     f"{sorted(rec_aus)}")
        if raw.get("source") not in sources:
            raise KnowledgeBaseError(f"{rwhere}: source {raw.get('source')!r} is not listed under sources")
        records.append(KBRecord(name, rec_aus, template, raw["source"]))
    for key in ("noun", "gloss"):
        if not entry.get(key):
            raise KnowledgeBaseError(f"{where}: lacks its {key}")
    return EmotionEntry(name, entry["noun"], entry["gloss"], prototype, tuple(records))


def _check_intensities(where: str, values: dict, aus: dict[str, ActionUnit]) -> dict[str, float]:
    out = {}
    for code, value in values.items():
        if code not in aus:
            raise KnowledgeBaseError(f"{where}: {code} has no entry under aus")
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise KnowledgeBaseError(f"{where}: {code} intensity {value!r} must be a number in 0..1")
        out[code] = float(value)
    return out


def _check_emotion_names(path: Path, emotions: dict[str, EmotionEntry]) -> None:
    from argen_ray.data.labels import EMOTIONS

    unknown = sorted(set(emotions) - set(EMOTIONS))
    if unknown:
        raise KnowledgeBaseError(f"{path}: emotions {unknown} are not canonical labels ({', '.join(EMOTIONS)})")


@lru_cache(maxsize=8)
def _cached(path: str | None) -> KnowledgeBase:
    return KnowledgeBase.load(path)


def load_knowledge_base(path: str | os.PathLike | None = None) -> KnowledgeBase:
    """The knowledge base at `path` (default: the packaged one), loaded once per process."""
    return _cached(str(path) if path is not None else None)


def allowed_aus(emotion: str, path: str | os.PathLike | None = None) -> set[str]:
    """AUs an expression of `emotion` may show (union of its prototype and variants)."""
    return load_knowledge_base(path).allowed_aus(emotion)


def prototype_aus(emotion: str, path: str | os.PathLike | None = None) -> dict[str, float]:
    """The emotion's prototype AUs with default intensities (0-1 fractions of the maximum)."""
    return load_knowledge_base(path).prototype_aus(emotion)
