"""An optuna baseline: Ray Tune's ``OptunaSearch`` over the space, multi-objective, budget as a constraint.

Not from a PEFT paper: a generic black-box baseline with the same trial contract as AutoPEFT.
Each module of the space is a categorical parameter (``space.to_tune()``; keys have no ``/``, which
``OptunaSearch`` would read as nesting). Two objectives, the validation score (max) and the
parameter ratio (min), drive NSGA-II (Deb et al., 2002; optuna's ``NSGAIISampler``) or the
multi-objective TPE (``TPESampler``). The budget is an optuna constraint, ``params - budget <= 0``:
both samplers prefer feasible trials (constrained domination for NSGA-II, Deb's rules; feasibility
for TPE). The constraint reads the trial's parameters (the module choices) and prices them with the
space's analytic count, which equals the ``PARAMS`` a trial reports; optuna evaluates
``constraints_func`` on its own record of the trial, which holds the suggested parameters, not the
values Ray reports. Uniform draws over every module's choices almost never fit a small budget, so
by default (``init_within_budget``) the random first generation (NSGA-II) or startup trials (TPE)
are enqueued as ``points_to_evaluate`` drawn within the budget with ``space.sample(rng, budget)``.

What Ray 2.60's ``OptunaSearch`` lacks, and the two overrides of :class:`BudgetedOptunaSearch`:

* ``set_search_properties`` returns False once a space is set, and Ray then rejects a Tuner
  ``param_space`` with search domains; when the space is not set it replaces the searcher's
  (list) metric with the Tuner's single one, losing the second objective. The override keeps the
  searcher's space and objectives and returns True.
* ``on_trial_complete`` tells optuna ``state=COMPLETE`` with whatever the result holds. A NaN
  score is then rejected by optuna's ``tell`` (a ValueError that Ray only logs), so the trial stays
  RUNNING in the study for good; a trial that errored after reporting metrics is recorded as
  COMPLETE with them. The override reports both as failed (FAIL), like a trial without a result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.tune.search.optuna import OptunaSearch

from methods.base import RATIO, SCORE, BlackBoxMethod, SearchProblem, finite
from methods.blackbox import ParetoSelect
from methods.optuna_baseline.config import OptunaConfig
from spaces.space import SearchSpace


class BudgetConstraint:
    """optuna ``constraints_func``: ``[params - budget]`` of a trial, from its module choices.

    A plain class (not a closure) so that ``OptunaSearch.save`` can pickle the sampler holding it.
    """

    def __init__(self, space: SearchSpace, budget: int) -> None:
        self.budget = int(budget)
        self.costs = {d.key: dict(zip(d.choices, space.choice_params(i))) for i, d in enumerate(space.dims())}

    def params(self, choices: dict[str, Any]) -> int:
        return sum(self.costs[key][int(value)] for key, value in choices.items() if key in self.costs)

    def __call__(self, trial) -> list[float]:
        return [float(self.params(trial.params) - self.budget)]


class BudgetedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose space, objectives and constraint are fixed at construction."""

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        failed = error or result is None or not all(finite(result.get(m)) for m in self.metric)
        super().on_trial_complete(trial_id, None if failed else result, error=failed)


class OptunaBaseline(ParetoSelect, BlackBoxMethod):
    """optuna NSGA-II / TPE over the space with the budget as a constraint (see the module docstring)."""

    name = "optuna"
    label = "Optuna"
    paper = "Akiba et al., Optuna: A Next-generation Hyperparameter Optimization Framework, KDD 2019 (baseline)"
    Config = OptunaConfig

    def make_searcher(self, problem: SearchProblem, metric: str = SCORE, mode: str = "max"):
        import optuna

        space, budget, seed = problem.space, problem.budget, problem.seed
        c, constraint = self.config, BudgetConstraint(space, budget)
        if c.sampler == "nsga2":
            sampler = optuna.samplers.NSGAIISampler(population_size=c.population_size, seed=seed,
                                                    constraints_func=constraint)
        else:
            sampler = optuna.samplers.TPESampler(n_startup_trials=c.n_startup_trials, seed=seed,
                                                 constraints_func=constraint)
        distributions = OptunaSearch.convert_search_space(space.to_tune())
        first = []
        if c.init_within_budget:
            rng = np.random.default_rng(seed)
            n = c.population_size if c.sampler == "nsga2" else c.n_startup_trials
            first = [space.to_tune_config(space.sample(rng, budget)) for _ in range(n)]
        return BudgetedOptunaSearch(space=distributions, metric=[metric, RATIO], mode=[mode, "min"],
                                    sampler=sampler, points_to_evaluate=first)
