"""What a trial hands the driver across the Ray boundary, typed.

A trial reports one JSON string under one key: a one-shot search its :class:`SearchOutcome` under
:data:`SEARCH_KEY`, a retrain its :class:`~suite.harness.RetrainResult` under :data:`RETRAIN_KEY`
(Ray Tune's loggers flatten nested results into columns; a string crosses as it is). The driver reads
them back with :func:`unpacked`, so every field is named by its class, never by a string key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

SEARCH_KEY = "search"
RETRAIN_KEY = "retrain"


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search: the architecture (``Architecture.to_dict``), its seconds (None: not
    measured) and what it reported (the record's ``search`` section)."""

    architecture: dict[str, Any]
    search_s: float | None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "search_s": self.search_s, "info": self.info}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchOutcome:
        return cls(data["architecture"], data["search_s"], data["info"])


class Typed(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


T = TypeVar("T")


def packed(value: Typed) -> str:
    """``value`` as the JSON string a trial reports (values JSON cannot hold become their text)."""
    return json.dumps(value.to_dict(), default=str)


def unpacked(cls: type[T], text: str) -> T:
    """The ``cls`` a trial reported as ``packed(value)``."""
    return cls.from_dict(json.loads(text))  # type: ignore[attr-defined]
