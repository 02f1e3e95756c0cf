"""Base class of every config section: unknown keys are errors, values are validated."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. Subclasses list their fields with defaults equal to the local preset."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
