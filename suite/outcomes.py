"""What a trial hands the driver across the Ray boundary, typed.

A trial reports one JSON string under one key: a one-shot search its :class:`SearchOutcome` under
:data:`SEARCH_KEY`, a retrain its :class:`RetrainResult` under :data:`RETRAIN_KEY`
(Ray Tune's loggers flatten nested results into columns; a string crosses as it is). The driver reads
them back with :func:`unpacked`, so every field is named by its class, never by a string key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import torch

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


@dataclass
class RetrainResult:
    """What one retrain measured."""

    validation: dict[str, float]
    test: dict[str, float]
    best_step: int
    steps: int
    train_time_s: float
    eval_time_s: float
    peak_memory_mb: float
    peft_params: int
    head_params: int
    backbone_params: int
    history: list[dict[str, Any]] = field(default_factory=list)
    pooling: str | None = None               # what a BERT-like head read (None: not a BERT-like model)
    op_options: dict[str, dict] = field(default_factory=dict)  # the recipe's op settings
    # What the retrain trial and the driver add: the backbone's revision, where and when the trial
    # ran (suite.trials.placement), and how many attempts it took (Ray's retries).
    backbone_revision: str | None = None
    placement: dict[str, Any] | None = None
    attempts: int = 1
    precision: str = "fp32"                  # what the training ran at: "bf16" (autocast) or "fp32"
    train_examples: int = 0                  # examples trained on (every step's batch, repeats counted)
    train_tokens: int = 0                    # their non-padding input tokens (attention mask; T5: source side)
    resumed_at: list[int] = field(default_factory=list)  # the steps it continued from a checkpoint at
    checkpoint_every: str = "off"          # how often it saved its state (HarnessConfig.checkpoint_every)
    # Not part of the record itself (the trial writes them beside it): the best checkpoint's
    # trainable weights by parameter name, and one prediction per test example.
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    predictions: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def ratio(self) -> float:
        """Trainable PEFT parameters per backbone parameter."""
        return self.peft_params / self.backbone_params

    def to_dict(self) -> dict[str, Any]:
        """The record's values (not the weights and predictions), with the derived ``ratio``."""
        # asdict deep-copies every field: left out before it, the weights are never copied (a full
        # fine-tuning's weights are the backbone's size)
        out = asdict(replace(self, weights=None, predictions=None))
        del out["weights"], out["predictions"]
        return {**out, "ratio": self.ratio}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainResult:
        """The result :meth:`to_dict` gave (an unknown key is a ``TypeError`` that names it)."""
        return cls(**{k: v for k, v in data.items() if k != "ratio"})


class Typed(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


T = TypeVar("T")


def packed(value: Typed) -> str:
    """``value`` as the JSON string a trial reports (values JSON cannot hold become their text)."""
    return json.dumps(value.to_dict(), default=str)


def unpacked(cls: type[T], text: str) -> T:
    """The ``cls`` a trial reported as ``packed(value)``."""
    return cls.from_dict(json.loads(text))  # type: ignore[attr-defined]
