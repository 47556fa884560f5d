"""Early selection at a trigger (paper §3.3-3.4): Eqs. 6-10, as small functions on CPU tensors.

Notation: ``N`` modules, ``K`` candidate sizes (``space.sizes``). Every module has a parameter row
``q_n`` of length ``K`` taken exactly from ``space.choice_params`` (not the authors' approximation
``size(rank 8) * [1, 4, 8] / 8``); a size-less module (BitFit, LNFit) has its one count repeated
``K`` times and counts as dimension-fixed, so Eq. 8 gives its count for any size distribution.

* Eq. 8: ``C_n = q_n[k*_n]`` if the dimension is fixed, else ``q_n . softmax(Φ_n)``.
* Eq. 7: ``E_t = sum_n p_n C_n`` with ``p_n = b_n * softmax(Θ_n)[keep]``. (The printed
  ``sum_k C_n^k`` has nothing left to sum over once ``C_n`` is defined by Eq. 8.)
* Eq. 6: ``R_z = (E_t - B) / (Z - z)``. ``z`` counts the triggers before this one (0 at the
  first), so the denominator is the number of triggers left including this one, ``Z .. 1``, as in
  the code; with ``z`` counted from 1 the last trigger would divide by zero.
* §3.3.2: remove the least sensitive kept modules until their total ``C_n`` reaches ``R_z``.
* Eq. 9: ``lambda_n = (1/K) sum_k sigma_{n,k} * KL(softmax Φ_j^n || softmax Φ_t^n)`` with
  ``sigma`` the standard deviation of each logit over the steps ``j..t`` since the last trigger.
* Eq. 10: ``Y_z = floor(sum(1 - d) * cos(v_{z-1}, v_z) / (Z - z))``; ``v^n = Dim[argmax Φ^n]``,
  ``Dim[k*]`` when fixed, 0 when removed; the ``Y_z`` unfixed modules with the lowest ``lambda``
  are fixed at ``v^n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class ModuleTable:
    """Per-module parameter rows ``q`` (``[N, K]``) and which modules are sized."""

    q: torch.Tensor
    sized: torch.Tensor
    sizes: tuple[int, ...]

    @classmethod
    def from_space(cls, space) -> ModuleTable:
        k = len(space.sizes)
        rows, sized = [], []
        for i, dim in enumerate(space.dims()):
            params = space.choice_params(i)[1:]  # choice 0 is "absent"
            rows.append(params if dim.sizes else params * k)
            sized.append(bool(dim.sizes))
        return cls(torch.tensor(rows, dtype=torch.float64), torch.tensor(sized), tuple(space.sizes))

    def __len__(self) -> int:
        return self.q.shape[0]


@dataclass
class SelectionState:
    """The selection indicators: ``b`` (kept), ``d`` (dimension fixed) and ``k*`` (fixed size index)."""

    kept: torch.Tensor
    fixed: torch.Tensor
    fixed_index: torch.Tensor

    @classmethod
    def initial(cls, table: ModuleTable) -> SelectionState:
        n = len(table)
        # size-less modules have nothing to choose: fixed at index 0 of their repeated row
        return cls(torch.ones(n, dtype=torch.bool), ~table.sized, torch.zeros(n, dtype=torch.long))


def module_sizes(table: ModuleTable, state: SelectionState, size_probs: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``C_n`` per module (``size_probs``: ``[N, K]``, rows of size-less modules ignored)."""
    expected = (table.q * size_probs).sum(-1)
    fixed = table.q.gather(1, state.fixed_index[:, None]).squeeze(1)
    return torch.where(state.fixed, fixed, expected)


def export_sizes(table: ModuleTable, state: SelectionState, argmax_index: torch.Tensor) -> torch.Tensor:
    """Per module, the parameters it would be exported with now: ``q_n[k*_n]`` if its dimension is
    fixed, else ``q_n[argmax Φ_n]`` (what ``budget_count='exported'`` counts)."""
    index = torch.where(state.fixed, state.fixed_index, argmax_index)
    return table.q.gather(1, index[:, None]).squeeze(1)


def expected_params(keep_prob: torch.Tensor, state: SelectionState, sizes: torch.Tensor,
                    hard: bool = False) -> float:
    """Eq. 7: ``E_t = sum_n p_n C_n``, ``p_n = b_n * keep_prob_n`` (``hard``: ``p_n = b_n``)."""
    p = state.kept.double() if hard else state.kept.double() * keep_prob
    return float((p * sizes).sum())


def reduction(expected: float, budget: float, max_triggers: int, done: int) -> float:
    """Eq. 6: ``R_z = (E_t - B) / (Z - z)`` with ``z = done`` triggers before this one."""
    return (expected - budget) / (max_triggers - done)


def select_removals(scores: torch.Tensor, sizes: torch.Tensor, kept: torch.Tensor, target: float,
                    skip_and_continue: bool = False, room: float = math.inf,
                    actual: torch.Tensor | None = None) -> list[int]:
    """§3.3.2: remove the least sensitive kept modules until their parameters reach ``target`` (``R_z``).

    The paper: "remove the modules with the lowest scores if their total parameter size is smaller
    than R_z" and, in Algorithm 1, "perform early module selection until the reduction R_z is
    achieved". Read together: walk up the sensitivity ranking and keep removing while the total
    removed is still below ``R_z``, so the module that reaches ``R_z`` goes too. (Stopping *before*
    the first module that would exceed ``R_z`` stalls whenever the least sensitive module is larger
    than ``R_z``, which early on, with ``R_z = (E_t - B) / Z``, is most triggers; measured on
    MiniLM/S2 it removed nothing at 64 of 100 triggers.) Sensitivity order is never skipped, and
    ``R_z`` is recomputed from ``E_t`` at every trigger, so the overshoot corrects itself.

    ``skip_and_continue`` is the authors' variant: walk past modules that would exceed ``R_z``,
    remove those that fit, and remove the least sensitive one anyway when none fits.

    ``room`` (with ``actual``, each module's real parameter count) is how far the kept set may
    still shrink: a module whose removal would take it below that (``floor * B``) is passed over in
    either variant, so no trigger ever leaves the search with too little to train (the authors'
    forced removal could empty it).
    """
    if target <= 0:
        return []
    actual = sizes if actual is None else actual
    order = torch.argsort(torch.where(kept, scores, torch.full_like(scores, torch.inf)), stable=True)
    order = order[kept[order]].tolist()
    chosen, used = [], 0.0
    for i in order:
        if not skip_and_continue and used >= target:
            break
        if actual[i] > room:
            continue
        if skip_and_continue and used + float(sizes[i]) > target:
            continue
        chosen.append(i)
        used += float(sizes[i])
        room -= float(actual[i])
    if skip_and_continue and not chosen:
        forced = [i for i in order if actual[i] <= room]
        chosen = forced[:1]
    return chosen


class LogitWindow:
    """Running statistics of Φ over the steps since the last trigger: first snapshot, sum, sum of squares."""

    def __init__(self) -> None:
        self.first: torch.Tensor | None = None
        self.count = 0

    def add(self, phi: torch.Tensor) -> None:
        phi = phi.double()
        if self.first is None:
            self.first, self.total, self.squares, self.count = phi.clone(), phi.clone(), phi * phi, 1
        else:
            self.total += phi
            self.squares += phi * phi
            self.count += 1
        self.last = phi.clone()

    def std(self) -> torch.Tensor:
        """Per-logit sample standard deviation over the window (0 with fewer than two snapshots)."""
        if self.count < 2:
            return torch.zeros_like(self.first)
        var = (self.squares - self.total * self.total / self.count) / (self.count - 1)
        return var.clamp_min(0).sqrt()

    def restart(self) -> None:
        """Start the next window at the current snapshot (the trigger step is its first step)."""
        last = self.last
        self.first = None
        self.add(last)


def dimension_stability(first: torch.Tensor, last: torch.Tensor, std: torch.Tensor,
                        reverse_kl: bool = False) -> torch.Tensor:
    """Eq. 9 per sized module: ``mean_k(sigma_k) * KL(softmax(first) || softmax(last))``.

    ``reverse_kl``: ``KL(softmax(last) || softmax(first))``, the direction of the authors'
    ``F.kl_div(log p_first, p_last)``.
    """
    log_p, log_q = first.log_softmax(-1), last.log_softmax(-1)
    if reverse_kl:
        log_p, log_q = log_q, log_p
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return std.mean(-1) * kl


def vector_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two vectors; NaN when one is zero (the caller decides what that means)."""
    denom = a.double().norm() * b.double().norm()
    return float("nan") if denom == 0 else float((a.double() @ b.double()) / denom)


def modules_to_fix_count(unfixed: int, cosine: float, max_triggers: int, done: int) -> int:
    """Eq. 10: ``Y_z = floor(unfixed * cos(v_{z-1}, v_z) / (Z - z))`` (a NaN cosine counts as 0)."""
    if math.isnan(cosine):
        cosine = 0.0
    return max(0, math.floor(unfixed * cosine / (max_triggers - done)))


def lowest(scores: torch.Tensor, candidates: torch.Tensor, count: int) -> list[int]:
    """The ``count`` candidates with the lowest scores (stable order)."""
    if count <= 0:
        return []
    order = torch.argsort(torch.where(candidates, scores, torch.full_like(scores, torch.inf)), stable=True)
    return order[candidates[order]][:count].tolist()


def potential_dimensions(table: ModuleTable, state: SelectionState, argmax_index: torch.Tensor,
                         index_form: bool = False) -> torch.Tensor:
    """``v_z`` over the sized modules: ``Dim[k*]`` if fixed, ``Dim[argmax Φ]`` if not, 0 if removed.

    ``index_form`` is the authors' variant: the argmax *index* (0, 1, 2, ...) rather than the
    dimension, and removed modules are not zeroed.
    """
    index = torch.where(state.fixed & state.kept, state.fixed_index, argmax_index)
    if index_form:
        return index[table.sized].double()
    dims = torch.tensor(table.sizes, dtype=torch.float64)[index]
    dims = torch.where(state.kept, dims, torch.zeros_like(dims))
    return dims[table.sized]
