"""Load a task from the HuggingFace hub (``nyu-mll/glue``, ``aps/super_glue``) with ``datasets``.

The hub schemas already use the task's field names and label order; what changes is ``idx`` (the
example's position in its split, as the local reader), MultiRC's and ReCoRD's ``group`` (from
their nested ``idx``) and ReCoRD's ``answers``, which become the label list.
"""

from __future__ import annotations

from typing import Any

from suite.tasks.base import Task
from suite.tasks.errors import HubUnavailable
from suite.tasks.files import expected_layout

Example = dict[str, Any]

# task -> (hub dataset, config, the split used as the original validation)
HUB: dict[str, tuple[str, str, str]] = {
    "glue/cola": ("nyu-mll/glue", "cola", "validation"),
    "glue/sst2": ("nyu-mll/glue", "sst2", "validation"),
    "glue/mrpc": ("nyu-mll/glue", "mrpc", "validation"),
    "glue/qqp": ("nyu-mll/glue", "qqp", "validation"),
    "glue/stsb": ("nyu-mll/glue", "stsb", "validation"),
    "glue/mnli": ("nyu-mll/glue", "mnli", "validation_matched"),
    "glue/qnli": ("nyu-mll/glue", "qnli", "validation"),
    "glue/rte": ("nyu-mll/glue", "rte", "validation"),
    "superglue/boolq": ("aps/super_glue", "boolq", "validation"),
    "superglue/cb": ("aps/super_glue", "cb", "validation"),
    "superglue/multirc": ("aps/super_glue", "multirc", "validation"),
    "superglue/record": ("aps/super_glue", "record", "validation"),
    "superglue/rte": ("aps/super_glue", "rte", "validation"),
    "superglue/wic": ("aps/super_glue", "wic", "validation"),
}


def hub_example(task: Task, row: dict[str, Any], position: int) -> Example:
    """One hub row as the task's example."""
    ex = dict(row)
    nested = ex.pop("idx", None)
    if task.name == "superglue/multirc":
        ex["group"] = f"{nested['paragraph']}-{nested['question']}"
    elif task.name == "superglue/record":
        ex["group"] = f"{nested['passage']}-{nested['query']}"
        ex["label"] = list(ex.pop("answers"))
        ex["entities"] = list(ex["entities"])
    ex["idx"] = position
    return ex


def load_hub(task: Task) -> dict[str, list[Example]]:
    """The task's original ``train`` and ``validation`` examples from the hub (or its local cache)."""
    path, config, validation = HUB[task.name]
    try:
        import datasets

        data = datasets.load_dataset(path, config)
        splits = {"train": data["train"], "validation": data[validation]}
    except Exception as e:  # offline, unreachable, not cached, renamed: all end in the same advice
        raise HubUnavailable(
            f"cannot load {task.name} from the HuggingFace hub ({path}, config {config!r}): the hub is "
            f"unreachable or the dataset is not cached ({type(e).__name__}: {e}). Pass --data-dir DIR "
            f"with the original release files: {expected_layout(task.name)}") from e
    return {split: [hub_example(task, row, i) for i, row in enumerate(rows.to_list())]
            for split, rows in splits.items()}
