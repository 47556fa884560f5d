"""Load a task from the HuggingFace hub (``nyu-mll/glue``, ``aps/super_glue``) with ``datasets``.

A task's :class:`Hub` names its dataset and config. The hub schemas already use the task's field
names and label order; what changes is ``idx`` (the example's position in its split, as the local
reader) and what the task's :meth:`~suite.tasks.base.Task.from_hub` reshapes (MultiRC's and
ReCoRD's ``group`` from their nested ``idx``, ReCoRD's ``answers`` as the label list).
:func:`hub_examples` converts the hub's rows wherever they come from: the hub, or a
``save_to_disk`` folder or parquet files under ``--data-dir`` (``suite.tasks.datadir``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suite.tasks.base import Task
from suite.tasks.errors import HubUnavailable, TaskDataError

Example = dict[str, Any]


@dataclass(frozen=True)
class Hub:
    """Where a task lives on the hub: ``datasets.load_dataset(path, config)``.

    Args:
        path: the hub dataset (``nyu-mll/glue``) or a local copy of its repository.
        config: the dataset's config (``cola``).
        validation: the split used as the original validation set (MNLI: ``validation_matched``).
    """

    path: str
    config: str
    validation: str = "validation"


def split_names(task: Task) -> dict[str, str]:
    """The hub's name of each original split (``train``, ``validation``) of ``task``."""
    return {"train": "train", "validation": task.hub.validation if task.hub else "validation"}


def hub_example(task: Task, row: dict[str, Any], position: int) -> Example:
    """One hub row as the task's example; its label is checked as a file's would be."""
    ex = dict(row)
    ex = task.from_hub(ex, ex.pop("idx", None))
    missing = [f for f in (*task.text_fields, "label") if f not in ex]
    if missing:
        raise ValueError(f"missing column(s) {missing}; found {sorted(row)}")
    ex["label"] = task.label_index(ex["label"])
    ex["idx"] = position
    return ex


def hub_examples(task: Task, splits: Mapping[str, Any], source: str) -> dict[str, list[Example]]:
    """The examples of each ``datasets.Dataset`` in ``splits`` (keyed ``train``, ``validation``),
    rows in the hub's schema; a malformed row or other label names is an error naming ``source``."""
    import datasets

    out = {}
    for split, rows in splits.items():
        feature = rows.features.get("label")
        if isinstance(feature, datasets.ClassLabel) and tuple(feature.names) != task.labels:
            raise TaskDataError(f"{source}: the {split} labels are {feature.names}, but {task.name}'s are "
                                f"{list(task.labels)} (in this order)")
        examples = []
        for position, row in enumerate(rows.to_list()):
            try:
                examples.append(hub_example(task, row, position))
            except (KeyError, TypeError, ValueError) as e:
                raise TaskDataError(f"malformed row in {source}: {split} row {position}: {e}") from None
        if not examples:
            raise TaskDataError(f"{source}: the {split} split holds no examples")
        out[split] = examples
    return out


def load_hub(task: Task) -> dict[str, list[Example]]:
    """The task's original ``train`` and ``validation`` examples from the hub (or its local cache)."""
    from suite.tasks.datadir import accepted_layouts

    if task.hub is None:
        raise TaskDataError(f"{task.name} is not on the HuggingFace hub (its definition has no `hub`): "
                             f"pass --data-dir DIR holding {accepted_layouts(task)}")
    path, config = task.hub.path, task.hub.config
    try:
        import datasets

        data = datasets.load_dataset(path, config)
        splits = {split: data[name] for split, name in split_names(task).items()}
    except Exception as e:  # offline, unreachable, not cached, renamed: all end in the same advice
        raise HubUnavailable(
            f"cannot load {task.name} from the HuggingFace hub ({path}, config {config!r}): the hub is "
            f"unreachable or the dataset is not cached ({type(e).__name__}: {e}). Pass --data-dir DIR "
            f"holding {accepted_layouts(task)}") from e
    return hub_examples(task, splits, f"{path} (config {config!r})")
