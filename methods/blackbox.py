"""Pieces the black-box methods share: their config's base and the within-budget selection.

* :class:`BlackBoxConfig` — what the search stage reads from every black-box method's config: how
  many candidates (``candidates``), how many at once (:meth:`BlackBoxConfig.concurrency`) and how each
  is proxy-trained (the :class:`ProxyFidelity` fields, turned into ``HarnessConfig`` overrides by
  :meth:`ProxyFidelity.overrides`). Every black-box method's ``Config`` derives from it.
* :class:`PickledState` — ``save``/``restore`` of a searcher through its ``get_state``/``set_state``.
* :func:`select_with_pareto` — the best-validation candidate within the budget, plus the Pareto
  set (validation score up, parameters down) of every finished candidate for the record; it filters
  and refuses as ``BlackBoxMethod.select`` does (:func:`methods.base.within_budget`).
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from typing import Any

from core.configs import check, check_positive_ints, option
from methods.base import PARAMS, RATIO, SCORE, SearchProblem, SearchResult, within_budget


@dataclass(frozen=True)
class ProxyFidelity:
    """How each candidate is proxy-trained (``None``: the harness default for that setting)."""

    train_fraction: float | None = option(None, "proxy-train on this fraction of the training examples")
    max_train_samples: int | None = option(None, "proxy-train on at most N training examples")
    max_steps: int | None = option(None, "a cap on the proxy-training steps of each candidate")
    epochs: int | None = option(None, "proxy-training epochs (None: the task's)")
    eval_every: int | None = option(None, "validate each candidate every N proxy steps (None: the task's "
                                          "interval; a large N: once, at the end)")

    def __post_init__(self) -> None:
        check(self.train_fraction is None or 0 < self.train_fraction <= 1,
              f"train_fraction must be in (0, 1] or None, got {self.train_fraction!r}")
        check_positive_ints(self, "max_train_samples", "max_steps", "epochs", "eval_every", allow_none=True)

    def overrides(self) -> dict[str, Any]:
        """The ``HarnessConfig`` overrides of the proxy trials (unset fields are left out): this
        class's fields are named as the harness's, which owns what they mean."""
        names = [f.name for f in dataclasses.fields(ProxyFidelity)]
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True)
class BlackBoxConfig(ProxyFidelity):
    """The base of every black-box method's config: the candidates the search stage runs, how many of
    them at once, and the proxy fidelity of each (a subclass redeclares ``candidates`` for its own default)."""

    candidates: int = option(1, "candidates proxy-trained in all (1: the one suggestion, not proxy-trained)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "candidates")

    def concurrency(self) -> int:
        """Candidates proxy-trained in parallel (default 1); a config with a parallelism option returns it."""
        return 1


class PickledState:
    """``Searcher.save``/``restore`` through the searcher's own ``get_state``/``set_state``."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def pareto_indices(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(score, params)`` points (score maximised, params minimised;
    BoTorch's ``is_non_dominated``, duplicates kept), sorted by params then score."""
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    if not points:
        return []
    y = torch.tensor([(s, -p) for s, p in points], dtype=torch.double)
    front = is_non_dominated(y, deduplicate=False).nonzero().squeeze(1).tolist()
    return sorted(front, key=lambda i: (points[i][1], -points[i][0]))


def select_with_pareto(candidate, problem: SearchProblem, results: list[dict[str, Any]]) -> SearchResult:
    """The best-validation candidate within ``budget`` and the Pareto set of all finished candidates.

    Args:
        candidate: ``method.candidate``, which decodes a trial config into an architecture.
        problem: the space and the parameter budget (a candidate over it is never returned).
        results: one dict per trial (``config``, ``SCORE``, ``RATIO``, ``PARAMS``); failed trials
            have a missing or NaN score and are counted but skipped.

    Returns:
        The architecture (ties on score go to fewer parameters) and an info dict: counts of
        candidates, finished and within-budget ones, and the Pareto set (each point's score,
        params, ratio, whether it fits the budget, and its architecture as a dict).
    """
    space, budget = problem.space, problem.budget
    done, fits = within_budget(results, budget)
    best = max(fits, key=lambda r: (r[SCORE], -r[PARAMS]))
    front = pareto_indices([(r[SCORE], r[PARAMS]) for r in done])
    pareto = [
        {"score": done[i][SCORE], "params": int(done[i][PARAMS]), "ratio": done[i].get(RATIO),
         "within_budget": done[i][PARAMS] <= budget,
         "architecture": candidate(space, done[i]["config"]).to_dict()}
        for i in front
    ]
    info = {"candidates": len(results), "finished": len(done), "within_budget": len(fits),
            "best_score": best[SCORE], "best_params": int(best[PARAMS]), "pareto": pareto}
    return SearchResult(candidate(space, best["config"]), info)


class ParetoSelect:
    """A ``BlackBoxMethod`` mix-in whose ``select`` is :func:`select_with_pareto`."""

    def select(self, problem: SearchProblem, results: list[dict[str, Any]]) -> SearchResult:
        """The best-validation candidate within the budget, and the Pareto set of all candidates."""
        return select_with_pareto(self.candidate, problem, results)
