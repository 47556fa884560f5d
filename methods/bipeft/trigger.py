"""Budget-aware trigger generation (paper §3.2.2): the importance indicator ``I_t`` and Eq. 5.

``I_t``: rank the kept modules by smoothed sensitivity, descending, and accumulate their parameters
(``C_n``, Eq. 8); a module is marked 1 while the running sum stays within the budget ``B``, and,
as the paper says, "otherwise, all the remaining indicator values are 0". The authors' code instead
skips a module that does not fit and keeps walking (a greedy knapsack): ``skip_and_continue``.

Eq. 5: ``beta_t = (1/H) sum_{j=t-H}^{t} cos(I_j, I_{j-1})``. The sum as printed has ``H + 1``
terms for a ``1/H`` average; we read it as the ``H`` most recent consecutive pairs
(``j = t-H+1 .. t``), which needs ``H + 1`` indicators and keeps ``beta_t <= 1``. The authors' code
compares the current indicator with each of the ``H`` before it (``cos(I_t, I_{t-k})``,
``k = 1..H``): ``form="window"``. Neither resets the history at a trigger (the code does not), so
once the indicator is stable, triggers fire on consecutive steps.
"""

from __future__ import annotations

from collections import deque

import torch

STABILITY_FORMS = ("consecutive", "window")


def importance_indicator(scores: torch.Tensor, sizes: torch.Tensor, kept: torch.Tensor, budget: float,
                         skip_and_continue: bool = False) -> torch.Tensor:
    """``I_t`` (a bool ``[N]``): the most sensitive kept modules whose parameters fit in ``budget``.

    Args:
        scores: smoothed sensitivities ``s_bar`` (``[N]``).
        sizes: parameters per module ``C_n`` (``[N]``).
        kept: the modules still in the supernet (removed ones are never marked).
        budget: ``B``.
        skip_and_continue: the authors' greedy knapsack instead of the paper's stop at the first
            module that overflows.
    """
    order = torch.argsort(torch.where(kept, scores, torch.full_like(scores, -torch.inf)), descending=True, stable=True)
    order = order[kept[order]]
    indicator = torch.zeros_like(kept)
    if not skip_and_continue:
        fits = torch.cumsum(sizes[order], 0) <= budget
        indicator[order[fits]] = True  # sizes > 0, so the fitting ones are exactly a prefix
        return indicator
    used = 0.0
    for i, size in zip(order.tolist(), sizes[order].tolist()):
        if used + size <= budget:
            indicator[i] = True
            used += size
        if used >= budget:
            break
    return indicator


def binary_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two 0/1 vectors; 1 for two empty indicators (nothing changed), 0 if only one is."""
    a, b = a.double(), b.double()
    na, nb = a.sum().item(), b.sum().item()  # |v|^2 of a 0/1 vector is its sum
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float((a @ b).item() / (na * nb) ** 0.5)


def stability(history: list[torch.Tensor], window: int, form: str = "consecutive") -> float | None:
    """Eq. 5 over the last ``window + 1`` indicators (None until there are that many)."""
    if form not in STABILITY_FORMS:
        raise ValueError(f"unknown stability form {form!r}; valid: {', '.join(STABILITY_FORMS)}")
    if len(history) < window + 1:
        return None
    recent = history[-(window + 1):]
    if form == "consecutive":
        sims = [binary_cosine(recent[j], recent[j - 1]) for j in range(1, window + 1)]
    else:
        sims = [binary_cosine(recent[-1], recent[-1 - k]) for k in range(1, window + 1)]
    return sum(sims) / window


class StabilityTrigger:
    """Keeps the last ``H + 1`` indicators and says when ``beta_t >= tau``.

    Args:
        window: ``H``.
        tau: the threshold ``τ``.
        form: ``"consecutive"`` (the paper's Eq. 5) or ``"window"`` (the authors' code).
    """

    def __init__(self, window: int, tau: float, form: str = "consecutive"):
        if form not in STABILITY_FORMS:
            raise ValueError(f"unknown stability form {form!r}; valid: {', '.join(STABILITY_FORMS)}")
        self.window, self.tau, self.form = window, tau, form
        self.history: deque[torch.Tensor] = deque(maxlen=window + 1)
        self.beta: float | None = None

    def update(self, indicator: torch.Tensor) -> bool:
        """Record ``I_t``; True when the trigger fires (``beta_t >= tau``)."""
        self.history.append(indicator.clone())
        self.beta = stability(list(self.history), self.window, self.form)
        return self.beta is not None and self.beta >= self.tau
