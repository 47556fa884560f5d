"""The greedy knapsack that turns module priorities into a structure within a budget."""

from __future__ import annotations

import numpy as np
import torch


def greedy_fill(priority, costs, budget: float) -> list[bool]:
    """A greedy knapsack: walk the modules by ``priority`` (highest first, ties by index) and keep
    each one whose cost still fits in ``budget``; modules that do not fit are skipped and the walk
    goes on (S3Delta's final structure, BIPEFT's indicator of Eq. 5 as coded).

    Args:
        priority: one score per module (any sequence or tensor of numbers).
        costs: one parameter count per module.
        budget: the parameter budget.

    Returns:
        ``keep[i]`` for every module; the kept costs sum to at most ``budget``.
    """
    if torch.is_tensor(priority):
        priority = priority.detach().cpu().double().numpy()
    priority = np.asarray(priority, dtype=float)
    costs = np.asarray(costs, dtype=float)
    if priority.shape != costs.shape:
        raise ValueError(f"priority {priority.shape} and costs {costs.shape} must have the same shape")
    keep, used = [False] * len(costs), 0.0
    for i in np.argsort(-priority, kind="stable"):
        if used + costs[i] <= budget:
            keep[i], used = True, used + costs[i]
    return keep
