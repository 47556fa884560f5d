"""AdaLoRA's own space: LoRA at any rank on the backbone's attention and FFN linears.

AdaLoRA allocates ranks freely (a matrix keeps any number of its ``init_r`` singular triplets), so
the ranks it exports are not bounded by a run space's candidate sizes ({1, 4, 8}). Its architectures
therefore name this space (``"adalora"``), not the run's: they are valid points of it
(``validate``), while a run space would reject their ranks. :class:`~spaces.architecture.Architecture`
and the retrain harness take any positive LoRA rank at a linear site, so nothing else changes.
The space is the same whatever ``--space`` the run has (S1 has no LoRA at all): AdaLoRA always
searches LoRA ranks on the linears, and the search info says so.
"""

from __future__ import annotations

import math

from spaces.sites import BackboneSites
from spaces.space import SearchSpace


class AdaLoRASpace(SearchSpace):
    """LoRA on every linear of the backbone at ``positions``, at ranks 1 .. R.

    ``R`` is the smallest ``min(d_in, d_out)`` over those linears: a LoRA of a higher rank adds no
    expressiveness there, and one ``init_r`` serves every matrix in peft.

    Args:
        sites: the backbone's sites.
        positions: the canonical positions of the targeted linears (``attn.q`` ... ``ffn.down``).
        backbone_name: recorded in the architectures.

    Raises:
        ValueError: the backbone has no linear at ``positions``.
    """

    name = "adalora"
    description = "LoRA at any rank 1..R on the attention and FFN linears (AdaLoRA's allocation)"

    def __init__(self, sites: BackboneSites, positions: tuple[str, ...], backbone_name: str = ""):
        self.positions = tuple(positions)
        targets = sites.sites("linear", self.positions)
        if not targets:
            raise ValueError(f"the {sites.family} backbone has no linear at {', '.join(self.positions)}")
        self.max_rank = min(min(s.d_in, s.d_out) for s in targets)
        super().__init__(sites, tuple(range(1, self.max_rank + 1)), backbone_name)

    def candidates(self):
        return [(spec, "lora") for spec in self.sites.sites("linear", self.positions)]

    def rank_cost(self, i: int) -> int:
        """Parameters of one rank (one singular triplet, exported as a rank-1 LoRA) of module ``i``."""
        return self.count_at(i, 1)

    def rank_budget(self, budget: int, fill: float) -> int:
        """The total target rank for ``budget``: ``floor(fill * budget / mean rank cost)``, at least 1.

        Every module starts at the same rank, so the mean cost of a triplet is the mean over the
        modules; the exported parameters are ``K`` times the mean cost of the triplets that win.
        """
        mean_cost = sum(self.rank_cost(i) for i in range(len(self))) / len(self)
        return max(1, math.floor(fill * budget / mean_cost))

    def module_paths(self) -> list[str]:
        """The module path (from the transformers model's root) of each module, in ``dims()`` order."""
        return [self.sites.spec(d.site).module for d in self.dims()]
