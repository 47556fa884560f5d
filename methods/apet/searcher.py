"""A Ray Tune ``Searcher`` that proposes APET draws 0, 1, 2, ... of a seed (it learns nothing)."""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher

from methods.apet.config import APETConfig
from methods.apet.draw import apet_draw, draw_rng
from methods.base import SCORE, SearchProblem
from methods.blackbox import PickledState
from spaces.architecture import Architecture


class APETSearcher(PickledState, Searcher):
    """Suggests the k-th APET draw for the k-th trial; deterministic per (seed, budget).

    Args:
        problem: the space, the parameter budget (no draw exceeds it) and the run seed.
        config: APET's options.
        metric, mode: the Tuner's metric (APET ignores results).
    """

    def __init__(self, problem: SearchProblem, config: APETConfig | None = None, metric: str = SCORE,
                 mode: str = "max") -> None:
        super().__init__(metric=metric, mode=mode)
        self.space, self.budget, self.seed = problem.space, int(problem.budget), int(problem.seed)
        self.config = config or APETConfig()
        self._drawn = 0

    def draw(self, k: int) -> Architecture:
        """Draw ``k`` of this seed and budget."""
        c = self.config
        return apet_draw(self.space, self.budget, draw_rng(self.seed, self.budget, k), c.delta_share, c.sizes,
                         c.refill)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        """The space is fixed at construction; a Tuner ``param_space`` is ignored."""
        return True

    def suggest(self, trial_id: str) -> dict[str, int]:
        arch = self.draw(self._drawn)
        self._drawn += 1
        return self.space.to_tune_config(arch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Random search: results do not change later draws."""

    def get_state(self) -> dict[str, Any]:
        return {"drawn": self._drawn, "seed": self.seed, "budget": self.budget}

    def set_state(self, state: dict[str, Any]) -> None:
        if (state["seed"], state["budget"]) != (self.seed, self.budget):
            raise ValueError(f"the saved APET draws are for seed {state['seed']} and budget {state['budget']}, "
                             f"this searcher's for seed {self.seed} and budget {self.budget}")
        self._drawn = state["drawn"]

