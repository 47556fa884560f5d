"""What a task is: its fields, labels, formats for each model family, and its metrics.

An *example* is a plain dict of the task's text fields plus ``"label"`` (a class index, a float
for regression, or the list of gold answers for extractive tasks), ``"idx"`` (its position in the
original split), and for grouped tasks ``"group"`` (MultiRC's question, ReCoRD's query).

Formats (methods.md §7.2, as S3Delta's ``data_processors/tasks.py``):

* T5 text-to-text: source ``"<prefix> key1 value1 key2 value2"`` (the keys are ``"field:"`` unless
  :attr:`Task.t5_keys` says otherwise), target the string of the label index (``"0"``, ``"1"``;
  STS-B the score rounded to one decimal; ReCoRD the answer text), scored by greedy generation
  and :meth:`Task.parse`.
* BERT-like encoders: the text pair of :meth:`Task.pair` with a classification head (a regression
  head for STS-B).
* Llama-like decoders: :meth:`Task.prompt` followed by one label token, scored over the label
  tokens of :meth:`Task.label_words`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from suite.tasks.files import Layout
    from suite.tasks.hub import Hub

Example = dict[str, Any]
KINDS = ("classification", "regression", "extractive")


@dataclass(frozen=True)
class Task:
    """A task of the benchmark: the one definition of everything about it.

    What varies beyond these fields lives on a subclass: how an example's text is cleaned
    (:meth:`text`), how training rows are made (:meth:`training_rows`), how a hub row becomes an
    example (:meth:`from_hub`), metrics over groups of examples (:meth:`grouped_metrics`) and where
    the original data comes from (:meth:`load_original`).

    Args:
        name: ``benchmark/task``, e.g. ``glue/rte``.
        kind: ``classification``, ``regression`` or ``extractive`` (ReCoRD).
        text_fields: the example fields that make up the input, in order.
        labels: class names by label index (classification); ``()`` otherwise.
        t5_prefix: the text-to-text task prefix (``rte``, ``superglue-boolq``).
        metrics: metric names; the first selects checkpoints (methods.md §7.3).
        large: whether the 2,000-sample validation is carved from train (methods.md §7.1).
        max_source_length: tokens (128 GLUE, 256 GLUE RTE and SuperGLUE, 512 ReCoRD).
        batch_size: training batch size (32 GLUE, 16 SuperGLUE and ReCoRD; BIPEFT App. B).
        epochs: the paper's per-task epochs (search = retrain; methods.md §1.11).
        t5_keys: the key written before each text field in the T5 source, one per field;
            ``()`` means ``"<field>:"`` for every field.
        eval_every: S3Delta's validation interval in retraining steps (methods.md §2.6);
            ``None``: once per epoch.
        retrain_epochs: retraining epochs where the paper's differ from the search's (BoolQ:
            15 search, 20 retrain); ``None``: :attr:`epochs`.
        label: how tables print the task (``"CoLA"``); default: the name after the ``/``.
        group: the ``--tasks`` group it belongs to (``glue``, ``superglue``: the paper's sets);
            ``""``: none.
        hub: where the HuggingFace hub holds it (``suite.tasks.hub.Hub``); ``None``: nowhere, so
            it needs ``--data-dir``.
        layout: its original release files under ``--data-dir`` (``suite.tasks.files.Layout``);
            ``None``: none (``--data-dir`` still reads a ``save_to_disk`` folder or parquet files).
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
    t5_keys: tuple[str, ...] = ()
    eval_every: int | None = None
    retrain_epochs: int | None = None
    label: str = ""
    group: str = ""
    hub: Hub | None = None
    layout: Layout | None = None

    def __post_init__(self) -> None:
        from suite.tasks.metrics import METRICS

        if self.kind not in KINDS:
            raise ValueError(f"task kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "classification" and len(self.labels) < 2:
            raise ValueError(f"classification task {self.name} needs at least two labels")
        if self.kind != "classification" and self.labels:
            raise ValueError(f"{self.kind} task {self.name} has no class labels, got {self.labels}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if not self.metrics or unknown:
            raise ValueError(f"task {self.name}: unknown metrics {unknown or '()'}; valid: {', '.join(METRICS)}")
        if self.t5_keys and len(self.t5_keys) != len(self.text_fields):
            raise ValueError(f"task {self.name}: {len(self.t5_keys)} t5_keys for {len(self.text_fields)} text fields")
        for field in ("max_source_length", "batch_size", "epochs", "eval_every", "retrain_epochs"):
            value = getattr(self, field)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise ValueError(f"task {self.name}: {field} must be a positive int, got {value!r}")

    @property
    def display_name(self) -> str:
        return self.label or self.name.split("/")[1]

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

    # ---- data ------------------------------------------------------------------------------------
    def load_original(self, data_dir: str | Path | None) -> dict[str, list[Example]]:
        """The original ``train`` and ``validation`` examples: from ``data_dir`` in any layout it
        accepts (``suite.tasks.datadir``), or from the hub when ``data_dir`` is ``None``."""
        if data_dir is not None:
            from suite.tasks.datadir import read_data_dir

            return read_data_dir(self, data_dir)
        from suite.tasks.hub import load_hub

        return load_hub(self)

    def from_hub(self, ex: Example, hub_idx: Any) -> Example:
        """A hub row, its ``idx`` column taken out as ``hub_idx``, as the task's example (the
        hub's schema is the example's unless a subclass reshapes it)."""
        return ex

    def label_index(self, raw: Any) -> Any:
        """The label of a raw file value: a class index (from an index, a label name or a JSON
        boolean), a float score (regression), or the list of answers (extractive)."""
        if self.kind == "regression":
            return float(raw)
        if self.kind == "extractive":
            return list(raw)
        if isinstance(raw, bool):
            raw = str(raw)  # SuperGLUE's JSON booleans name the labels "False" / "True"
        if isinstance(raw, str):
            if raw in self.labels:
                return self.labels.index(raw)
            if not raw.strip().isdigit():
                raise ValueError(f"unknown label {raw!r}; valid: {', '.join(self.labels)} or their indices")
            raw = int(raw)
        if not isinstance(raw, int) or not 0 <= raw < len(self.labels):
            raise ValueError(f"label {raw!r} is not an index below {len(self.labels)} ({', '.join(self.labels)})")
        return raw

    def training_rows(self, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The training rows made from ``examples`` (the same rows, except for ReCoRD)."""
        return examples

    def text(self, ex: dict[str, Any], field: str) -> str:
        """The text of one field as the model sees it."""
        return str(ex[field])

    # ---- formats ---------------------------------------------------------------------------------
    def source(self, ex: dict[str, Any]) -> str:
        """T5 source text: ``"<prefix> key1 value1 key2 value2"``."""
        keys = self.t5_keys or tuple(f"{f}:" for f in self.text_fields)
        parts = [self.t5_prefix] if self.t5_prefix else []
        for key, field in zip(keys, self.text_fields):
            parts += [key, self.text(ex, field)]
        return " ".join(parts)

    def target(self, ex: dict[str, Any]) -> str:
        """T5 target text: the label index as a string; STS-B rounded to one decimal.

        STS-B follows S3Delta's ``round_stsb_target``: ``np.round((label * 5) / 5, decimals=1)``,
        which rounds to one decimal (not to the nearest 0.2 its docstring promises).
        """
        label = ex["label"]
        if self.kind == "regression":
            return str(float(np.round((float(label) * 5) / 5, decimals=1)))
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
        if self.kind == "regression" and not np.isfinite(value):
            return None
        if self.kind == "classification" and not 0 <= value < len(self.labels):
            return None
        return value

    def pair(self, ex: dict[str, Any]) -> tuple[str, str | None]:
        """Encoder input: the first field and the rest joined (or None for one-field tasks)."""
        first = self.text(ex, self.text_fields[0])
        rest = [self.text(ex, f) for f in self.text_fields[1:]]
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

    def grouped_metrics(self, predictions: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics that read more than one label at a time (MultiRC's per-question exact match,
        ReCoRD's best gold answer), by name; ``{}``: every metric compares labels one by one."""
        return {}


class MultiRCTask(Task):
    """MultiRC: one example per answer; the HTML markup of the texts is removed (as S3Delta / T5)."""

    def text(self, ex: dict[str, Any], field: str) -> str:
        text = re.sub("<br>", " ", str(ex[field]))
        return re.sub("<(/)?b>", "", text)

    def from_hub(self, ex: Example, hub_idx: Any) -> Example:
        """The hub's nested ``idx`` names the question, which groups the answers."""
        return {**ex, "group": f"{hub_idx['paragraph']}-{hub_idx['question']}"}

    def grouped_metrics(self, predictions: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
        from suite.tasks.metrics import multirc

        return multirc(predictions, examples)


class RecordTask(Task):
    """ReCoRD: cloze-style extractive QA; the target is an answer's text.

    Source (S3Delta's ``SuperGLUERecord``): ``"superglue-record record query: <query> entities:
    <e1>, <e2>, ... passage: <passage>"`` with the passage's ``@highlight`` lines joined into
    sentences.

    Rows: an example is one query with all its gold answers as the label list. Training rows are
    duplicated once per gold answer (:meth:`training_rows`, as S3Delta); validation and test keep
    one row per query scored against all gold answers. S3Delta duplicates those too, which weights
    a query by its number of answers in the score; one row per query is the official ReCoRD
    metric and is what ``split sizes 2,000 / 10,000`` of methods.md §7.1 count.
    """

    def text(self, ex: dict[str, Any], field: str) -> str:
        if field == "entities":
            return ", ".join(ex["entities"])
        if field == "passage":
            passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", ex["passage"])
            return re.sub(r"\n@highlight\n", ". ", passage)
        return str(ex[field])

    def training_rows(self, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per gold answer, that answer first in the label list (it is the target)."""
        rows = []
        for ex in examples:
            answers = ex["label"]
            if not answers:  # no gold answer: nothing to learn (S3Delta would train on "<unk>")
                continue
            for answer in answers:
                rows.append({**ex, "label": [answer] + [a for a in answers if a != answer]})
        return rows

    def source(self, ex: dict[str, Any]) -> str:
        return (f"{self.t5_prefix} record query: {self.text(ex, 'query')} entities: "
                f"{self.text(ex, 'entities')} passage: {self.text(ex, 'passage')}")

    def pair(self, ex: dict[str, Any]) -> tuple[str, str | None]:
        raise ValueError(f"{self.name} is extractive: encoders are not supported for it")

    def from_hub(self, ex: Example, hub_idx: Any) -> Example:
        """The hub's ``answers`` become the label list; its nested ``idx`` names the query."""
        ex = {**ex, "group": f"{hub_idx['passage']}-{hub_idx['query']}", "entities": list(ex["entities"])}
        ex["label"] = list(ex.pop("answers"))
        return ex

    def grouped_metrics(self, predictions: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
        from suite.tasks.metrics import squad

        return squad(predictions, examples)
