"""Prunable groups of the PEFT ops, their Taylor scores, and the budgeted choice of module sizes.

A *group* is the smallest unit PrunePEFT keeps or removes:

* a sized op's **channel** ``j`` (one unit of its size): a LoRA rank-1 component (row ``j`` of ``A``
  and column ``j`` of ``B``); a rank-1 component of *both* factorisations of the low-rank adapter
  (row ``j`` of each right factor and column ``j`` of each left factor); a bottleneck adapter
  channel (row ``j`` of ``down`` with its bias entry and column ``j`` of ``up``); a prefix position
  (row ``j`` of the keys and of the values);
* a sized op's **base**: the parameters every size needs (the adapters' output bias and the
  low-rank adapter's bottleneck bias, the prefix gate). It goes with the module's first channel;
* a size-less op (a BitFit bias vector, an LNFit scale vector) as a whole.

So an op at size ``k`` costs ``base + k * channel`` parameters, which :data:`CHANNEL_DIMS` encodes
per op (a test checks it against every op's ``count``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from spaces.ops.base import Op

# op name -> {parameter name: the dimension indexing its channels, or None for base parameters}
CHANNEL_DIMS: dict[str, dict[str, int | None]] = {
    "lora": {"A": 0, "B": 1},
    "adapter_lr": {"down_right": 0, "down_left": 1, "down_bias": None,
                   "up_right": 0, "up_left": 1, "up_bias": None},
    "adapter_serial": {"down_weight": 0, "down_bias": 0, "up_weight": 1, "up_bias": None},
    "adapter_parallel": {"down_weight": 0, "down_bias": 0, "up_weight": 1, "up_bias": None},
    "prefix": {"keys": 0, "values": 0, "gate": None},
    "dora": {"A": 0, "B": 1, "magnitude": None},
}
MAX_CELLS = 100_000  # the knapsack grid: cells of the budget, per module


def channel_dims(op: Op) -> dict[str, int | None]:
    """The channel dimension of each of ``op``'s parameters (all ``None`` for a size-less op)."""
    if not op.sized:
        return {name: None for name, _ in op.named_parameters()}
    try:
        return CHANNEL_DIMS[op.name]
    except KeyError:
        raise ValueError(f"PrunePEFT does not know the channels of op {op.name!r}; "
                         f"known sized ops: {', '.join(sorted(CHANNEL_DIMS))}") from None


@dataclass
class ModuleGroups:
    """One module's groups.

    Attributes:
        channel_scores: the score of each live channel, best first (a size-less op: one entry,
            the whole module).
        channel_cost: parameters per channel (a size-less op: its whole size).
        base_score: the score of the base parameters (0 for a size-less op).
        base_cost: parameters of the base (0 for a size-less op).
        sizes: the candidate sizes (``(1,)`` for a size-less op: 1 = present).
        order: the live channels' indices in the op, best first (for reordering the weights).
    """

    channel_scores: np.ndarray
    channel_cost: int
    base_score: float
    base_cost: int
    sizes: tuple[int, ...]
    order: np.ndarray

    def cost(self, k: int) -> int:
        return 0 if k == 0 else self.base_cost + k * self.channel_cost

    def score(self, lo: int, hi: int) -> float:
        """The score of growing the module from ``lo`` to ``hi`` channels (the base comes with the first)."""
        return float(self.channel_scores[lo:hi].sum()) + (self.base_score if lo == 0 < hi else 0.0)


def module_groups(op: Op, scores: dict[str, torch.Tensor], sizes: tuple[int, ...], live: int | None = None
                  ) -> ModuleGroups:
    """The groups of ``op`` from per-parameter scores (``scores[name]`` shaped like the parameter).

    Args:
        op: the op (search mode, allocated at its largest size).
        scores: per-parameter importance, by parameter name.
        sizes: the module's candidate sizes (``()`` for a size-less op).
        live: how many leading channels are still in play (default: all allocated).
    """
    dims = channel_dims(op)
    params = dict(op.named_parameters())
    if not op.sized:
        total = float(sum(scores[n].sum() for n in params))
        cost = sum(p.numel() for p in params.values())
        return ModuleGroups(np.array([total]), cost, 0.0, 0, (1,), np.array([0]))
    live = op.size if live is None else live
    channel = torch.zeros(op.size, dtype=torch.float64)
    base_score, base_cost, channel_cost = 0.0, 0, 0
    for name, p in params.items():
        dim, s = dims[name], scores[name].detach().double().cpu()
        if dim is None:
            base_score += float(s.sum())
            base_cost += p.numel()
        else:
            others = [d for d in range(s.dim()) if d != dim]
            channel += s.sum(dim=others) if others else s  # (an empty dim list would sum everything)
            channel_cost += p.numel() // p.shape[dim]
    values = channel[:live].numpy()
    order = np.argsort(-values, kind="stable")
    return ModuleGroups(values[order], channel_cost, base_score, base_cost, tuple(sizes), order)


def select_sizes(modules: list[ModuleGroups], budget: float, floor: float = 0.0,
                 at_least: list[int] | None = None) -> list[int]:
    """Each module's size (0 = dropped): the most important groups within ``budget`` at candidate sizes.

    Removing a set of groups changes the loss by about the sum of their Taylor scores, so the kept
    set should carry the largest total score. A module at size ``k`` keeps its ``k`` best channels
    (and its base); ``k`` must be a candidate size no larger than its live channels. Among all such
    choices this returns the one with the largest total score whose cost lies in
    ``[floor, budget]`` (the largest total score within ``budget`` when none reaches ``floor``): a
    multiple-choice knapsack, solved exactly by dynamic programming over the costs in units of
    their greatest common divisor. (When that grid would exceed :data:`MAX_CELLS` cells, costs are
    rounded *up* to a coarser unit: still never over ``budget``, and at most one unit per module
    short of the optimum.)

    Args:
        modules: every module's groups (a removed module: no channels).
        budget: the most parameters to keep.
        floor: the fewest parameters to keep, when reachable (the suite asks for ``0.8 * budget``).
        at_least: a lower bound on each module's size (it must then fit in ``budget`` together).
    """
    at_least = at_least or [0] * len(modules)
    options = []  # per module: (size, exact cost, score), the smallest size first
    for m, low in zip(modules, at_least):
        opts = [(0, 0, 0.0)] if low == 0 else []
        for k in m.sizes:
            if low <= k <= len(m.channel_scores) and m.cost(k) <= budget:
                opts.append((k, m.cost(k), m.score(0, k)))
        if not opts:
            raise ValueError(f"no size >= {low} of a module fits in {budget} parameters")
        options.append(opts)
    costs = [c for opts in options for _, c, _ in opts if c]
    unit = math.gcd(*costs) if costs else 1
    if budget / unit > MAX_CELLS:
        unit = math.ceil(budget / MAX_CELLS)
    cells = int(budget // unit)
    best = np.full(cells + 1, -np.inf)
    best[0] = 0.0
    picks = np.zeros((len(modules), cells + 1), dtype=np.int8)
    for i, opts in enumerate(options):
        new = np.full(cells + 1, -np.inf)
        for j, (_, cost, score) in enumerate(opts):
            c = math.ceil(cost / unit)
            if c > cells:
                continue
            cand = np.full(cells + 1, -np.inf)
            cand[c:] = best[: cells + 1 - c] + score
            better = cand > new
            new[better] = cand[better]
            picks[i, better] = j
        best = new
    if not np.isfinite(best).any():
        raise ValueError(f"the lower bounds on the sizes do not fit in {budget} parameters")
    lo = min(cells, math.ceil(floor / unit))
    reach = np.isfinite(best[lo:])
    end = lo + int(np.argmax(np.where(reach, best[lo:], -np.inf))) if reach.any() else int(np.argmax(best))
    sizes = [0] * len(modules)
    for i in range(len(modules) - 1, -1, -1):
        j = int(picks[i, end])
        size, cost, _ = options[i][j]
        sizes[i] = size
        end -= math.ceil(cost / unit)
    return sizes
