"""APET: random PEFT placements at a fixed parameter budget.

Su et al., "Exploring the Impact of Model Scaling on Parameter-Efficient Tuning", EMNLP 2023; code
``yushengsu-thu/PET_Scaling`` (methods.md §5). APET trains a random set of PEFT modules and
backbone tensors whose size is the budget; the paper's point is that at scale *where* the
parameters go matters little. One draw per seed (``candidates=1``, no proxy training); with
``candidates=n`` it is random search, the best of n draws by proxy validation.

The draw (:func:`~methods.apet.draw.apet_draw`) and its deviations from the authors' code (no
overshoot, sizes per placement, the refill pass) are documented in :mod:`methods.apet.draw`.
"""

from __future__ import annotations

from methods.apet.config import APETConfig
from methods.apet.searcher import APETSearcher
from methods.base import SCORE, BlackBoxMethod, SearchProblem


class APET(BlackBoxMethod):
    """APET (Su et al., EMNLP 2023): a random architecture that fills the budget (see the module docstring)."""

    name = "apet"
    label = "APET"
    paper = "Su et al., Exploring the Impact of Model Scaling on Parameter-Efficient Tuning, EMNLP 2023"
    Config = APETConfig

    def authors_recipe(self) -> dict[str, dict]:
        return {"lora": {"scaling": 2.0}}  # APET's LoRA: r=8, alpha=16 (modeling_t5.py:412-423)

    def settings(self) -> list[str]:
        return ([f"best of {self.config.candidates}"] if self.config.candidates > 1 else []) + super().settings()

    def make_searcher(self, problem: SearchProblem, metric: str = SCORE, mode: str = "max") -> APETSearcher:
        return APETSearcher(problem, self.config, metric=metric, mode=mode)

