"""``throwaway-greedy``: a one-shot "search" that needs no training: the largest modules first, at
their largest size, while they fit (first-fit decreasing). A test method, not a baseline."""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, option
from methods.base import OneShotMethod, SearchContext, SearchResult
from methods.knapsack import greedy_fill


@dataclass(frozen=True)
class GreedyConfig:
    size: str = option("largest", "which candidate size every module takes: 'largest' or 'smallest'")

    def __post_init__(self) -> None:
        check(self.size in ("largest", "smallest"), f"unknown size {self.size!r}; valid: largest, smallest")


class Greedy(OneShotMethod):
    name = "throwaway-greedy"
    label = "Greedy (test)"
    paper = "none: a throw-away method for the plugin tests"
    Config = GreedyConfig

    def run_search(self, ctx: SearchContext) -> SearchResult:
        space = ctx.space
        pick = -1 if self.config.size == "largest" else 1
        costs = [space.choice_params(i)[pick] for i in range(len(space))]
        keep = greedy_fill(costs, costs, ctx.budget)
        choices = [d.choices[pick] if k else 0 for d, k in zip(space.dims(), keep)]
        return SearchResult(space.from_choices(choices), {"modules": sum(keep)})
