"""Fit an exported architecture to the budget: ``floor * B <= params <= B``.

The paper says the search ends with "the model size approximat[ing] the targeted budget B", but
its selection works on *expected* sizes (Eqs. 7-8), so the discrete architecture (kept modules at
their fixed or argmax sizes) can land on either side of ``B``. This module makes the exported
architecture honour the budget, with the least change:

1. **Trim** while above ``B``: drop the least important chosen module (BIPEFT: lowest smoothed
   sensitivity, the same criterion as its early selection).
2. **Fill** while below ``floor * B``: re-add the most important absent modules (each at its
   preferred size if that fits, else the largest size that fits; a module trimmed in step 1 may
   come back at a smaller size), then grow the most important chosen modules to the largest size
   that fits, until ``floor * B`` is reached. Nothing is ever added beyond ``B``.

Every change is returned so the search can record it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BudgetFit:
    """The fitted choices (0 = absent, else the size; 1 for size-less modules) and what changed."""

    choices: list[int]
    params: int
    dropped: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)


def fit_budget(space, choices: list[int], preferred: list[int], importance: list[float], budget: int,
               floor: float) -> BudgetFit:
    """Trim ``choices`` to ``<= budget``, then fill it to ``>= floor * budget`` if it fell short.

    Args:
        space: the search space (``count_at``, ``dims``).
        choices: per module, 0 (absent) or its size (1 for size-less modules).
        preferred: per module, the size it takes if it is re-added (e.g. argmax Φ; 1 if size-less).
        importance: per module, higher is more important.
        budget: ``B``.
        floor: fill up to ``floor * B`` when below it.
    """
    dims = space.dims()
    choices = list(choices)

    def cost(i: int, c: int) -> int:
        return space.count_at(i, c) if c else 0

    total = sum(cost(i, c) for i, c in enumerate(choices))
    result = BudgetFit(choices, total)
    by_importance = sorted(range(len(choices)), key=lambda i: (importance[i], -i))
    for i in by_importance:  # least important first
        if total <= budget:
            break
        if choices[i]:
            total -= cost(i, choices[i])
            choices[i] = 0
            result.dropped.append(i)
    target = floor * budget
    for i in reversed(by_importance):  # most important first
        if total >= target:
            break
        if choices[i]:
            continue
        options = dims[i].choices[1:]
        fitting = [c for c in options if total + cost(i, c) <= budget]
        if fitting:
            choice = preferred[i] if preferred[i] in fitting else max(fitting)
            choices[i] = choice
            total += cost(i, choice)
            result.added.append(i)
    for i in reversed(by_importance):
        if total >= target:
            break
        if not choices[i] or not dims[i].sizes:
            continue
        current = cost(i, choices[i])
        larger = [c for c in dims[i].sizes if c > choices[i] and total - current + cost(i, c) <= budget]
        if larger:
            choices[i] = max(larger)
            total += cost(i, choices[i]) - current
            result.grown.append(i)
    result.params = total
    return result
