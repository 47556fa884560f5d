"""APET's random placement at a fixed budget (``train_seq2seq.py:479-548``; methods.md §5).

APET splits the budget 50/50 between *delta* parameters (whole LoRA pairs and adapter quadruples)
and *inner* backbone tensors (biases, norm weights), shuffles each group and greedily keeps every
item that still fits its half. In a suite space the delta group is the sized ops (LoRA, adapters,
prefix) and the inner group the size-less ones (BitFit, LNFit); an item is a *placement*, a module
at one of its sizes.

:func:`apet_draw` does that, with three differences from the authors' code:

* an item must fit whole: the code tests only the first tensor of a LoRA pair / adapter group
  against the remaining budget, so it can overshoot; here nothing ever does;
* with ``sizes="any"`` every (module, size) placement is an item and the first one drawn that fits
  claims its module (the authors' modules have one size, r = 8 / b = 24; ``sizes="largest"`` keeps
  only each module's largest size, the closest match);
* with ``refill`` (default), what both halves leave is offered once more to every module still
  absent, in a new random order, so that at the end no absent module fits at any size the draw
  allows. ``refill=False`` is the code's rule: each half on its own, the rest left unused.

When a space has only one group (S1 has no size-less op), that group gets the whole budget.
``space.sample(rng, budget)`` is not used: it draws one random size per module and keeps it only
if it fits, so a module can be skipped although a smaller size would fit, and it has no split.
"""

from __future__ import annotations

import numpy as np

from spaces.architecture import Architecture
from spaces.space import SearchSpace

SIZE_RULES = ("any", "largest")


def draw_rng(seed: int, budget: int, draw: int) -> np.random.Generator:
    """The generator of draw ``draw`` (APET seeds each run with ``budget * seed``; here both enter)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(budget), int(draw)]))


def apet_draw(space: SearchSpace, budget: int, rng: np.random.Generator, delta_share: float = 0.5,
              sizes: str = "any", refill: bool = True) -> Architecture:
    """A random architecture of ``space`` within ``budget`` parameters, drawn as APET does.

    Args:
        space: the search space.
        budget: the parameter budget (never exceeded).
        rng: the random generator (see :func:`draw_rng`).
        delta_share: the sized ops' share of the budget when the space also has size-less ops.
        sizes: ``"any"`` (every size of a module is an item) or ``"largest"``.
        refill: offer what the two halves leave to every module still absent.

    Returns:
        The architecture; a ValueError if not even the cheapest placement fits the budget.
    """
    if budget <= 0:
        raise ValueError(f"budget must be > 0 parameters, got {budget}")
    if sizes not in SIZE_RULES:
        raise ValueError(f"unknown sizes rule {sizes!r}; valid: {', '.join(SIZE_RULES)}")
    dims = space.dims()
    items: dict[bool, list[tuple[int, int]]] = {True: [], False: []}  # sized? -> (module, choice index)
    for i, d in enumerate(dims):
        indices = range(1, len(d.choices)) if sizes == "any" else [len(d.choices) - 1]
        items[bool(d.sizes)] += [(i, j) for j in indices]
    if items[True] and items[False]:
        delta = int(budget * delta_share)
        allowances = [(items[True], delta), (items[False], budget - delta)]
    else:
        allowances = [(items[True] or items[False], budget)]

    choices = [0] * len(dims)

    def fill(group: list[tuple[int, int]], allowance: int) -> int:
        used = 0
        for k in rng.permutation(len(group)):
            i, j = group[k]
            cost = space.choice_params(i)[j]
            if not choices[i] and used + cost <= allowance:
                choices[i], used = dims[i].choices[j], used + cost
        return used

    spent = sum(fill(group, allowance) for group, allowance in allowances)
    if refill:
        fill(items[True] + items[False], budget - spent)
    if not any(choices):
        raise ValueError(f"no placement of space {space.name!r} fits a budget of {budget} parameters "
                         f"(the cheapest costs {min(min(space.choice_params(i)[1:]) for i in range(len(dims)))})")
    return space.from_choices(choices)
