"""The canonical emotion labels (DFER-CLIP's DFEW order, DESIGN 2) and name/alias lookup."""
from __future__ import annotations

import numbers

from argen_ray.errors import ArgenError

# Index = canonical label int. Every adapter maps its dataset onto this order.
EMOTIONS: list[str] = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
SCARCE_DEFAULT: tuple[str, ...] = ("surprise", "disgust", "fear")

# Names other datasets and papers use (FERV39k, CK+, AR-SU/DI/FE style abbreviations).
_ALIASES: dict[str, str] = {
    "happiness": "happy", "joy": "happy", "ha": "happy",
    "sadness": "sad", "sa": "sad",
    "neutrality": "neutral", "ne": "neutral",
    "anger": "angry", "an": "angry",
    "surprised": "surprise", "su": "surprise",
    "disgusted": "disgust", "di": "disgust",
    "fearful": "fear", "afraid": "fear", "fe": "fear",
}
_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}
_INDEX.update({alias: _INDEX[name] for alias, name in _ALIASES.items()})


class LabelError(ArgenError, ValueError):
    """A label that is not one of the seven canonical emotions (or a known alias)."""


def label_index(label: str | int) -> int:
    """Canonical int for a name (case-insensitive, aliases allowed) or an int 0..6.

    Digit strings count as ints ("4" -> 4), so CSV cells need no special casing by callers.
    """
    if isinstance(label, bool):
        raise LabelError(f"label {label!r} is a bool, not an emotion name or class index")
    if isinstance(label, numbers.Integral):
        value = int(label)
        if not 0 <= value < len(EMOTIONS):
            raise LabelError(f"label {value} is out of range: canonical labels are 0..{len(EMOTIONS) - 1} "
                             f"({', '.join(f'{i} {n}' for i, n in enumerate(EMOTIONS))})")
        return value
    if isinstance(label, str):
        text = label.strip().lower()
        if text.lstrip("+-").isdigit():
            return label_index(int(text))
        if text in _INDEX:
            return _INDEX[text]
        raise LabelError(f"unknown emotion label {label!r}: expected one of {', '.join(EMOTIONS)} "
                         f"(or an alias such as anger, sadness, happiness)")
    raise LabelError(f"label {label!r} has type {type(label).__name__}; expected an emotion name or an int")


def label_name(label: str | int) -> str:
    """Canonical name for any accepted label form."""
    return EMOTIONS[label_index(label)]
