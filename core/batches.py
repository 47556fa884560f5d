"""Batches on a device, and endless passes over a loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on ``device`` (other values unchanged)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def cycle(batches: Iterable[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches: pass after pass over a re-iterable loader (reshuffled per pass if it does)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("cannot cycle over an empty split")
