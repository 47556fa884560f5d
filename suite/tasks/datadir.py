"""Read a task from ``--data-dir`` in any of the three layouts people keep it in.

With ``<task>`` the task's name (``glue/cola``) and ``DIR`` the data directory:

1. ``DIR/<task>/`` written by ``datasets``' ``save_to_disk`` (a ``DatasetDict``: ``dataset_dict.json``
   and a folder per split), as AutoPEFT's README has its users make it:
   ``load_dataset("nyu-mll/glue", "cola").save_to_disk("DIR/glue/cola")``;
2. ``DIR/<task>/<split>-*.parquet``: the hub's own files, e.g. ``DIR/glue`` a download of the
   ``nyu-mll/glue`` repository (``cola/train-00000-of-00001.parquet``, ...);
3. the task's original release files (its ``layout``; ``suite.tasks.files``).

The splits are the hub's (``train`` and the task's ``Hub.validation``: MNLI's
``validation_matched``). Layouts 1 and 2 hold the hub's rows and are read with ``datasets`` and
converted as the hub's are (``suite.tasks.hub.hub_examples``). They are recognised by their files
and tried first, so that a case-insensitive file system, where ``DIR/glue/rte`` and the release
folder ``DIR/glue/RTE`` are one folder, still tells them apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.tasks.base import Task
from suite.tasks.errors import MissingDataFile, TaskDataError
from suite.tasks.files import expected_layout, read_original
from suite.tasks.hub import hub_examples, split_names

Example = dict[str, Any]
SAVED_MARKER = "dataset_dict.json"  # what save_to_disk writes next to a DatasetDict's split folders
RELEASE_LAYOUT = "DIR/glue/<Task>/train.tsv, dev.tsv; DIR/superglue/<Task>/train.jsonl, val.jsonl"


def accepted_layouts(task: Task, data_dir: str | Path = "DIR") -> str:
    """The layouts in which ``data_dir`` may hold ``task``, for error messages."""
    folder = Path(data_dir) / task.name
    parquet = " and ".join(f"{folder / name}-*.parquet" for name in split_names(task).values())
    layouts = [f"a `save_to_disk` folder {folder} (with {SAVED_MARKER})", f"the hub's parquet files {parquet}"]
    if task.layout is not None:
        layouts.insert(0, f"the original release files {expected_layout(task, data_dir)} "
                          f"(layout: {RELEASE_LAYOUT})")
    return "; or ".join(layouts)


def read_data_dir(task: Task, data_dir: str | Path) -> dict[str, list[Example]]:
    """The task's original ``train`` and ``validation`` examples from ``data_dir``, in whichever
    layout it holds them; a folder in none names the folder and every accepted layout."""
    folder = Path(data_dir) / task.name
    if (folder / SAVED_MARKER).is_file():
        return read_saved(task, folder)
    if any(folder.glob("*.parquet")):
        return read_parquet(task, folder)
    if task.layout is None:
        why = f"no {SAVED_MARKER} or parquet file in {folder}"
    else:
        try:
            return read_original(task, data_dir)
        except MissingDataFile as e:
            why = str(e)
    raise MissingDataFile(f"{why}: {data_dir} holds {task.name} in none of the layouts --data-dir accepts: "
                          f"{accepted_layouts(task, data_dir)}")


def read_saved(task: Task, folder: Path) -> dict[str, list[Example]]:
    """The examples of a ``DatasetDict`` that ``save_to_disk`` wrote to ``folder``."""
    import datasets

    try:
        data = datasets.load_from_disk(str(folder))
    except Exception as e:  # a damaged or foreign folder: the library's reason, with the folder
        raise TaskDataError(f"cannot read the `save_to_disk` folder {folder}: {type(e).__name__}: {e}") from None
    missing = [name for name in split_names(task).values() if name not in data]
    if missing:
        raise TaskDataError(f"the `save_to_disk` folder {folder} has no split {', '.join(missing)} for "
                            f"{task.name}; it has {', '.join(data)}")
    splits = {split: data[name] for split, name in split_names(task).items()}
    return hub_examples(task, splits, f"the `save_to_disk` folder {folder}")


def read_parquet(task: Task, folder: Path) -> dict[str, list[Example]]:
    """The examples of the hub's parquet files ``<split>-*.parquet`` in ``folder``."""
    import datasets

    names = split_names(task)
    files = {split: sorted(str(p) for p in folder.glob(f"{name}-*.parquet")) for split, name in names.items()}
    missing = [f"{names[split]}-*.parquet" for split, found in files.items() if not found]
    if missing:
        present = sorted(p.name for p in folder.glob("*.parquet"))
        raise MissingDataFile(f"{folder} has no {' or '.join(missing)} for {task.name}; it has {', '.join(present)}")
    try:
        data = datasets.load_dataset("parquet", data_files=files)
    except Exception as e:  # a damaged file: the library's reason, with the folder
        raise TaskDataError(f"cannot read the parquet files in {folder}: {type(e).__name__}: {e}") from None
    return hub_examples(task, data, f"the parquet files in {folder}")
