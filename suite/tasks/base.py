"""What a task is: its fields, labels, formats for each model family, and its metrics.

An *example* is a plain dict of the task's text fields plus ``"label"`` (a class index, a float
for regression, or the list of gold answers for extractive tasks), ``"idx"``, and for grouped
tasks ``"group"`` (MultiRC's question, ReCoRD's query).

Formats (methods.md §7.2):

* T5 text-to-text: source ``"<prefix> field1: ... field2: ..."``, target the string of the label
  index (``"0"``, ``"1"``; STS-B the score rounded to one decimal; ReCoRD the answer text), scored
  by greedy generation and :meth:`Task.parse`.
* BERT-like encoders: the text pair of :meth:`Task.pair` with a classification head (a regression
  head for STS-B).
* Llama-like decoders: :meth:`Task.prompt` followed by one label token, scored over the label
  tokens of :meth:`Task.label_words`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("classification", "regression", "extractive")


@dataclass(frozen=True)
class Task:
    """A task of the benchmark.

    Args:
        name: ``benchmark/task``, e.g. ``glue/rte``.
        kind: ``classification``, ``regression`` or ``extractive`` (ReCoRD).
        text_fields: the example fields that make up the input, in order.
        labels: class names by label index (classification); ``()`` otherwise.
        t5_prefix: the text-to-text task prefix (``rte``, ``superglue-boolq``).
        metrics: metric names; the first selects checkpoints (methods.md §7.3).
        large: whether the 2,000-sample validation is carved from train (methods.md §7.1).
        max_source_length: tokens (128 GLUE, 256 GLUE RTE and SuperGLUE, 512 ReCoRD).
        batch_size: training batch size (32 GLUE, 16 SuperGLUE).
        epochs: the paper's per-task epochs (search = retrain; methods.md §1.11).
    """

    name: str
    kind: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...] = ()
    t5_prefix: str = ""
    metrics: tuple[str, ...] = ("accuracy",)
    large: bool = False
    max_source_length: int = 128
    batch_size: int = 32
    epochs: int = 3

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "classification" and len(self.labels) < 2:
            raise ValueError(f"classification task {self.name} needs at least two labels")

    @property
    def benchmark(self) -> str:
        return self.name.split("/")[0]

    @property
    def num_labels(self) -> int:
        """Outputs of a classification head (1 for regression)."""
        return len(self.labels) if self.kind == "classification" else 1

    @property
    def selection_metric(self) -> str:
        return self.metrics[0]

    # ---- formats ---------------------------------------------------------------------------------
    def source(self, ex: dict[str, Any]) -> str:
        """T5 source text: ``"<prefix> field1: v1 field2: v2"``."""
        parts = [self.t5_prefix] if self.t5_prefix else []
        parts += [f"{f}: {ex[f]}" for f in self.text_fields]
        return " ".join(parts)

    def target(self, ex: dict[str, Any]) -> str:
        """T5 target text: the label index as a string; STS-B rounded to one decimal."""
        label = ex["label"]
        if self.kind == "regression":
            return f"{round(float(label), 1)}"
        if self.kind == "extractive":
            return label[0] if label else ""
        return str(int(label))

    def parse(self, text: str) -> Any:
        """The label a generated text stands for, or ``None`` if it is not a valid output."""
        text = text.strip()
        if self.kind == "extractive":
            return text
        try:
            value = float(text) if self.kind == "regression" else int(text)
        except ValueError:
            return None
        if self.kind == "classification" and not 0 <= value < len(self.labels):
            return None
        return value

    def pair(self, ex: dict[str, Any]) -> tuple[str, str | None]:
        """Encoder input: the first field and the rest joined (or None for one-field tasks)."""
        first = str(ex[self.text_fields[0]])
        rest = [str(ex[f]) for f in self.text_fields[1:]]
        return first, (" ".join(rest) if rest else None)

    def prompt(self, ex: dict[str, Any]) -> str:
        """Decoder prompt, followed in training by one label token (see :meth:`label_words`)."""
        return f"{self.source(ex)} answer:"

    def label_words(self) -> tuple[str, ...]:
        """The single-token label strings a decoder scores (the label indices, like T5's targets)."""
        if self.kind == "classification":
            return tuple(f" {i}" for i in range(len(self.labels)))
        if self.kind == "regression":  # STS-B on a decoder: the integer scores 0..5, expectation as output
            return tuple(f" {i}" for i in range(6))
        raise ValueError(f"{self.name} is extractive: decoders are not supported for it")

    def score(self, predictions: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
        """The task's metrics (×100) of ``predictions`` against the examples' labels."""
        from suite.tasks.metrics import compute

        return compute(self, predictions, examples)
