"""Read a task's original release files from a local data directory (its ``Task.layout``).

GLUE / SuperGLUE layout (``DIR`` is ``--data-dir``)::

    DIR/glue/<CoLA|SST-2|MRPC|QQP|STS-B|MNLI|QNLI|RTE>/train.tsv, dev.tsv   (MNLI: dev_matched.tsv)
    DIR/superglue/<BoolQ|CB|MultiRC|ReCoRD|RTE|WiC>/train.jsonl, val.jsonl

GLUE TSVs are tab-separated without quoting (quotes are text), in UTF-8 (MRPC's header starts
with a BOM). CoLA has no header (source, label, original mark, sentence); the others have one and
their columns are found by name: SST-2 ``sentence, label``; MRPC ``Quality, #1 String, #2 String``;
QQP ``question1, question2, is_duplicate``; STS-B ``sentence1, sentence2`` and the score in the
last column (some STS-B rows carry extra columns); MNLI ``sentence1, sentence2, gold_label``;
QNLI ``question, sentence, label``; RTE ``sentence1, sentence2, label``.

SuperGLUE files are JSON lines: BoolQ ``question, passage, label``; CB and RTE ``premise,
hypothesis, label``; WiC ``word, sentence1, sentence2, start1, end1, start2, end2, label``;
MultiRC one paragraph per line (``passage.text``, ``passage.questions[].question``,
``.answers[].text`` and ``.label`` or ``.isAnswer``), read as one example per answer grouped by
question; ReCoRD one passage per line (``passage.text``, ``passage.entities[]`` with inclusive
``start``/``end``, ``qas[]`` with ``query`` and ``answers[].text``), read as one example per query
with its unique answers (sorted) as the label and the passage's unique entities (in order of
appearance) as the candidates.

Every example gets ``idx``, its position in the file's examples, as HF's GLUE loader does.
"""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.tasks.base import Task
from suite.tasks.errors import MissingDataFile, TaskDataError

Example = dict[str, Any]


@dataclass(frozen=True)
class Tsv:
    """A GLUE TSV: text columns (field -> header name, or index without a header) and the label's."""

    columns: dict[str, str | int] = field(hash=False)
    label: str | int
    header: bool = True
    extra_columns: bool = False  # rows may have more columns than the header (STS-B)


@dataclass(frozen=True)
class Layout:
    """Where a task's release files are under ``--data-dir`` and how they are read.

    Args:
        folder: the task's folder under ``--data-dir`` (``glue/CoLA``).
        reader: a :class:`Tsv`, or a function ``(task, path) -> examples`` (:func:`read_jsonl_fields`).
        files: the file of each original split (``train``, ``validation``) in ``folder``.
    """

    folder: str
    reader: Tsv | Callable[[Task, Path], list[Example]]
    files: dict[str, str] = field(default_factory=lambda: {"train": "train.tsv", "validation": "dev.tsv"},
                                  hash=False)

    def paths(self, data_dir: str | Path) -> dict[str, Path]:
        """The file of each original split under ``data_dir``."""
        return {split: Path(data_dir) / self.folder / name for split, name in self.files.items()}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-empty lines; only ``\\n`` ends a line (fields may hold other breaks).

    Each line is decoded on its own, so a byte that is not UTF-8 is reported at its own line and column
    (a file decoder reads ahead in chunks and could only say "somewhere after line N")."""
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        if not raw:
            continue
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TaskDataError(f"{path} is not UTF-8 text: line {number}, column {e.start + 1} has a bad byte "
                                f"({e.reason})") from None


def _malformed(path: Path, line: int, why: str) -> TaskDataError:
    return TaskDataError(f"malformed row in {path} at line {line}: {why}")


def read_tsv(task: Task, path: Path, spec: Tsv) -> list[Example]:
    lines = _lines(path)
    header: list[str] | None = None
    if spec.header:
        first = next(lines, None)
        if first is None:
            raise TaskDataError(f"{path} is empty; expected a header line")
        header = first[1].split("\t")
        wanted = [c for c in (*spec.columns.values(), spec.label) if isinstance(c, str)]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise _malformed(path, first[0], f"the header lacks column(s) {missing}; found {header}")
    width = len(header) if header else 1 + max(c for c in (*spec.columns.values(), spec.label) if isinstance(c, int))
    pos = {name: (header.index(c) if isinstance(c, str) else c) for name, c in spec.columns.items()}
    label_pos = header.index(spec.label) if isinstance(spec.label, str) else spec.label
    examples = []
    for number, line in lines:
        row = line.split("\t")
        if len(row) < width or (len(row) > width and not spec.extra_columns):
            raise _malformed(path, number, f"{len(row)} tab-separated columns, expected {width}")
        ex: Example = {name: row[i] for name, i in pos.items()}
        try:
            ex["label"] = task.label_index(row[label_pos])
        except ValueError as e:
            raise _malformed(path, number, str(e)) from None
        ex["idx"] = len(examples)
        examples.append(ex)
    return examples


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise _malformed(path, number, f"invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise _malformed(path, number, f"expected a JSON object, got {type(row).__name__}")
        yield number, row


def read_jsonl_fields(fields: tuple[str, ...]) -> Callable[[Task, Path], list[Example]]:
    """A reader of flat SuperGLUE JSONL rows with ``fields`` and ``label``."""

    def read(task: Task, path: Path) -> list[Example]:
        examples = []
        for number, row in _json_lines(path):
            try:
                ex = {f: row[f] for f in fields}
                ex["label"] = task.label_index(row["label"])
            except KeyError as e:
                raise _malformed(path, number, f"missing key {e.args[0]!r}") from None
            except ValueError as e:
                raise _malformed(path, number, str(e)) from None
            ex["idx"] = len(examples)
            examples.append(ex)
        return examples

    return read


@contextlib.contextmanager
def _row(path: Path, number: int):
    """A missing key or a bad value in a nested JSON row is a malformed row at its line."""
    try:
        yield
    except KeyError as e:
        raise _malformed(path, number, f"missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise _malformed(path, number, str(e)) from None


def read_multirc(task: Task, path: Path) -> list[Example]:
    examples = []
    for number, row in _json_lines(path):
        with _row(path, number):
            passage = row["passage"]
            for q_pos, question in enumerate(passage["questions"]):
                group = f"{row.get('idx', number)}-{question.get('idx', q_pos)}"
                for answer in question["answers"]:
                    label = answer["label"] if "label" in answer else answer["isAnswer"]
                    examples.append({"paragraph": passage["text"], "question": question["question"],
                                     "answer": answer["text"], "label": task.label_index(label),
                                     "group": group, "idx": len(examples)})
    return examples


def read_record(task: Task, path: Path) -> list[Example]:
    examples = []
    for number, row in _json_lines(path):
        with _row(path, number):
            text = row["passage"]["text"]
            spans = sorted(row["passage"]["entities"], key=lambda e: e["start"])
            entities = list(dict.fromkeys(text[e["start"]:e["end"] + 1] for e in spans))  # end is inclusive
            for q_pos, qa in enumerate(row["qas"]):
                answers = sorted({a["text"] for a in qa.get("answers", [])})
                examples.append({"passage": text, "query": qa["query"], "entities": entities, "label": answers,
                                 "group": f"{row.get('idx', number)}-{qa.get('idx', q_pos)}",
                                 "idx": len(examples)})
    return examples


JSONL_FILES = {"train": "train.jsonl", "validation": "val.jsonl"}  # SuperGLUE's file names


def expected_layout(task: Task, data_dir: str | Path = "DIR") -> str:
    """The release files ``task`` needs under ``data_dir``, for error messages."""
    return ", ".join(str(p) for p in _layout(task).paths(data_dir).values())


def _layout(task: Task) -> Layout:
    if task.layout is None:
        raise TaskDataError(f"{task.name} has no release files (its definition has no `layout`)")
    return task.layout


def read_original(task: Task, data_dir: str | Path) -> dict[str, list[Example]]:
    """The task's original ``train`` and ``validation`` examples from the release files in ``data_dir``."""
    layout = _layout(task)
    out = {}
    for split, path in layout.paths(data_dir).items():
        if not path.is_file():
            raise MissingDataFile(f"missing file {path} for {task.name}")
        if isinstance(layout.reader, Tsv):
            out[split] = read_tsv(task, path, layout.reader)
        else:
            out[split] = layout.reader(task, path)
        if not out[split]:
            raise TaskDataError(f"{path} holds no examples")
    return out
