"""The safety net: fit AdaLoRA's final ranks into the budget window ``[floor * B, B]``.

AdaLoRA's budget is a total rank: the parameters it exports depend on which linears win the
triplets (a rank on an FFN linear of BERT costs 5d, on an attention projection 2d), so its own
allocation can land on either side of the window. The fit changes as little as it can, one triplet
at a time, by the importance score AdaLoRA's final allocation ranked by (paper Eq. 11):

1. **Trim** while above ``B``: drop the kept triplet of lowest score.
2. **Fill** while below ``floor * B``: re-add the masked triplet of highest score that still fits
   under ``B`` (a triplet that does not fit is skipped, the walk goes on).

When AdaLoRA's allocation is in the window, nothing changes. The result says what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RankFit:
    """The fitted rank per module and what the fit did (for the search info)."""

    ranks: list[int]
    params_before: int
    params_after: int
    dropped: int = 0
    added: int = 0
    changed: dict[int, tuple[int, int]] = field(default_factory=dict)  # module -> (rank before, rank after)


def fit_ranks(kept: list[list[bool]], scores: list[list[float]], costs: list[int], budget: int,
              floor: float) -> RankFit:
    """Trim, then fill, the kept triplets so that their cost lies in ``[floor, budget]`` if it can.

    Args:
        kept: per module, AdaLoRA's final mask over its triplets (peft's ``rank_pattern``).
        scores: per module, each triplet's importance at the final allocation.
        costs: per module, the parameters of one triplet exported as a LoRA rank (``d_in + d_out``).
        budget: ``B``.
        floor: the fewest parameters to reach (``0.8 * B``); never filled beyond ``budget``.
    """
    keep = [list(mask) for mask in kept]
    before = [sum(mask) for mask in keep]
    total = sum(r * c for r, c in zip(before, costs))
    fit = RankFit([], total, total)
    # (score, module, triplet): ties broken by position, so the fit is deterministic
    triplets = sorted((float(s), m, j) for m, row in enumerate(scores) for j, s in enumerate(row))
    for _, m, j in triplets:  # least important first
        if total <= budget:
            break
        if keep[m][j]:
            keep[m][j], total, fit.dropped = False, total - costs[m], fit.dropped + 1
    for _, m, j in reversed(triplets):  # most important first
        if total >= floor:
            break
        if not keep[m][j] and total + costs[m] <= budget:
            keep[m][j], total, fit.added = True, total + costs[m], fit.added + 1
    fit.ranks = [sum(mask) for mask in keep]
    fit.params_after = total
    fit.changed = {m: (b, a) for m, (b, a) in enumerate(zip(before, fit.ranks)) if a != b}
    return fit
