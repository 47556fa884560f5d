"""``throwaway-random``: random architectures within the budget, one Ray trial each; the best by
proxy validation wins (the base class's ``select``). A test method, not a baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from core.configs import option
from methods.base import SCORE, BlackBoxMethod, SearchProblem
from methods.blackbox import BlackBoxConfig, PickledState


@dataclass(frozen=True)
class RandomConfig(BlackBoxConfig):
    candidates: int = option(2, "random architectures proxy-trained")


class RandomSearcher(PickledState, Searcher):
    def __init__(self, problem: SearchProblem, metric: str = SCORE, mode: str = "max") -> None:
        super().__init__(metric=metric, mode=mode)
        self.problem = problem
        self.rng = np.random.default_rng(problem.seed)

    def suggest(self, trial_id: str) -> dict[str, int]:
        return self.problem.space.to_tune_config(self.problem.space.sample(self.rng, self.problem.budget))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Random search learns nothing from results."""

    def get_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class RandomSearch(BlackBoxMethod):
    name = "throwaway-random"
    label = "Random (test)"
    paper = "none: a throw-away method for the plugin tests"
    Config = RandomConfig

    def make_searcher(self, problem: SearchProblem, metric: str = SCORE, mode: str = "max") -> RandomSearcher:
        return RandomSearcher(problem, metric, mode)
