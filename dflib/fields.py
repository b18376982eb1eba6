"""Parameter declarations: :class:`Field`, the one-line :class:`ProfileError`, defaults, and
the :class:`Stage` a section belongs to.

A leaf (it imports nothing of dflib), so the code that reads a profile section can declare
that section's fields next to itself in a light ``<module>_fields`` module, and
:mod:`dflib.config` can assemble the schema from those modules without importing the heavy
code (TensorFlow, torch) that reads them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence


class ProfileError(ValueError):
    """A profile problem, phrased as one line naming the key, value or path."""


# A float as YAML 1.2 writes it: PyYAML reads YAML 1.1, where ``3e-4`` (no dot) is a string.
_FLOAT_LITERAL = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")


def _as_float(value: Any) -> Any:
    """``value`` as a float where the user means one (an int, or a string such as ``3e-4``
    that YAML 1.2 reads as a float); anything else unchanged, for the type check."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
        return float(value)
    return value


@dataclass(frozen=True)
class Field:
    """One parameter: its type, default, allowed values or range, and meaning."""

    kind: type | tuple[type, ...]
    default: Any
    help: str
    choices: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None
    item: type | None = None  # element type of a list
    length: int | None = None  # exact list length

    def check(self, key: str, value: Any) -> Any:
        """Return ``value`` coerced to the field's type, or raise :class:`ProfileError`."""
        if self.kind is float:
            value = _as_float(value)
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ProfileError(f"{key}: expected {names}, got {type(value).__name__} {value!r}")
        if isinstance(value, list):
            if self.length is not None and len(value) != self.length:
                raise ProfileError(f"{key}: expected a list of {self.length} values, got {value!r}")
            if self.item is not None:
                value = [Field(self.item, None, "", choices=self.choices, min=self.min,
                               max=self.max).check(f"{key}[{i}]", v) for i, v in enumerate(value)]
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise ProfileError(f"{key}: {value!r} is not a finite number")
        if self.choices is not None and value not in self.choices:
            raise ProfileError(f"{key}: {value!r} is not allowed (allowed: "
                               f"{', '.join(map(str, self.choices))})")
        if self.min is not None and value < self.min:
            raise ProfileError(f"{key}: {value!r} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ProfileError(f"{key}: {value!r} is above the maximum {self.max}")
        return value


def defaults(fields: Mapping[str, Field]) -> dict[str, Any]:
    """Each field's default: the values of a section a profile leaves empty."""
    return {k: f.default for k, f in fields.items()}


@dataclass(frozen=True)
class Stage:
    """A stage of the study: its notebook and the parameters of its profile section.

    ``scoring``: the stage scores detectors, so its notebook also receives the
    ``evaluation`` section (:func:`dflib.config.stage_fields`). ``check``: a rule that ties
    keys together (of the section, or the section and the shared keys), declared beside the
    fields; it returns one line naming the key, or None (:func:`dflib.config.validate`
    raises it as a :class:`ProfileError`)."""

    name: str
    notebook: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    scoring: bool = False
    check: Callable[[str, Mapping[str, Any], Mapping[str, Any]], str | None] | None = None
