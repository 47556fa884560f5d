"""Splits and batches: the examples of a task's splits, and seeded loaders over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

Example = dict[str, Any]


@dataclass
class Splits:
    """The three splits of the paper's protocol (methods.md §7.1): train, validation, test."""

    train: list[Example]
    validation: list[Example]
    test: list[Example]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def weight_half_size(n_train: int) -> int:
    """Examples in the weight-train half of a train split of ``n_train`` (:func:`search_halves`)."""
    return n_train // 2


def search_halves(train: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """The 50/50 weight-train / arch-train split of train used by searches (DARTS; paper App. B)."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    half = weight_half_size(len(train))
    return [train[i] for i in order[:half]], [train[i] for i in order[half:]]


def subsample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """At most ``n`` examples, drawn without replacement (low-fidelity proxies); all if ``n`` is None."""
    if n is None or n >= len(examples):
        return examples
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    return [examples[i] for i in sorted(order[:n])]


class _Indexed(Dataset):
    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[int, Example]:
        return i, self.examples[i]


def make_loader(examples: list[Example], collator, batch_size: int, shuffle: bool = False,
                seed: int = 0) -> DataLoader:
    """Batches of ``examples``; shuffled with a seeded generator (a new order each pass)."""
    if not examples:
        raise ValueError("cannot make batches of an empty split")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(_Indexed(examples), batch_size=batch_size, shuffle=shuffle, collate_fn=collator,
                      generator=generator)
