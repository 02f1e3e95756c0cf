"""Base class of every config section: unknown keys are errors, values are validated."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic_core import to_jsonable_python


class Section(BaseModel):
    """A config section. Subclasses list their fields with defaults equal to the local preset."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    # Fields that place, batch or show the work but do not change its results (actor counts, GPUs,
    # progress bars, checkpoint cadence): left out of `result_settings`.
    PLACEMENT: ClassVar[frozenset[str]] = frozenset()

    def result_settings(self) -> dict:
        """The section's values as JSON types, without its (and its subsections') PLACEMENT fields:
        what a stored result made under this section depends on, so a rerun can tell whether it is
        still valid."""
        out = {}
        for name in type(self).model_fields:
            if name in self.PLACEMENT:
                continue
            value = getattr(self, name)
            out[name] = value.result_settings() if isinstance(value, Section) else to_jsonable_python(value)
        return out
