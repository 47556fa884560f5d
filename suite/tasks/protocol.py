"""The split protocol of S3Delta / BIPEFT (methods.md §7.1; S3Delta ``AbstractTask.get``).

The original test sets have no public labels, so every task gets three splits from its original
train and validation sets, shuffled by ``torch.randperm`` with a generator seeded by the run seed
(every seed gets a different split):

* large datasets (``Task.large``: QQP, QNLI, ReCoRD, SST-2, MNLI): validation = the first 2,000
  of the shuffled train, train = the rest, test = the original validation (MNLI: matched);
* small datasets (the rest): train unchanged; the shuffled original validation is halved,
  validation = the first ⌊n/2⌋, test = the remaining ⌈n/2⌉.

Train, validation and test never share an example. Methods only ever see train and validation
(the harness keeps the test split for the final score).
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from suite.data import Splits
from suite.tasks.base import Task
from suite.tasks.errors import TaskDataError

LARGE_VALIDATION_SIZE = 2000

Example = dict[str, Any]


def shuffled(n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)`` from ``torch.randperm`` seeded with ``seed`` (as S3Delta)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def make_splits(task: Task, train: list[Example], validation: list[Example], seed: int) -> Splits:
    """Train / validation / test of ``task`` from its original train and validation examples."""
    seed = operator.index(seed)  # an int (numpy ints too); a float or a string is a TypeError
    if task.large:
        if len(train) <= LARGE_VALIDATION_SIZE:
            raise TaskDataError(f"{task.name} is a large task: its validation split is {LARGE_VALIDATION_SIZE:,} "
                                f"examples carved from train, which has only {len(train):,}")
        order = shuffled(len(train), seed)
        splits = Splits(train=[train[i] for i in order[LARGE_VALIDATION_SIZE:]],
                        validation=[train[i] for i in order[:LARGE_VALIDATION_SIZE]],
                        test=list(validation))
    else:
        if len(validation) < 2:
            raise TaskDataError(f"{task.name}: the original validation set ({len(validation)} examples) "
                                "is too small to halve into validation and test")
        order = shuffled(len(validation), seed)
        half = len(validation) // 2
        splits = Splits(train=list(train), validation=[validation[i] for i in order[:half]],
                        test=[validation[i] for i in order[half:]])
    splits.train = task.training_rows(splits.train)
    return splits
