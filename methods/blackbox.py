"""Pieces the black-box methods share: their config's base and the within-budget selection.

* :class:`BlackBoxConfig` — what the search stage reads from every black-box method's config: how
  many candidates (``candidates``), how many at once (:meth:`BlackBoxConfig.concurrency`), how each
  is proxy-trained (the :class:`ProxyFidelity` fields, turned into ``HarnessConfig`` overrides by
  :meth:`ProxyFidelity.overrides`) and whether weak ones stop early (``scheduler``, below). Every
  black-box method's ``Config`` derives from it.
* :func:`candidate_scheduler` — the Ray Tune scheduler of one job's candidates (``scheduler="asha"``).
* :class:`PickledState` — ``save``/``restore`` of a searcher through its ``get_state``/``set_state``.
* :func:`select_with_pareto` — the best-validation candidate within the budget, plus the Pareto
  set (validation score up, parameters down) of every finished candidate for the record; it filters
  and refuses as ``BlackBoxMethod.select`` does (:func:`methods.base.within_budget`).

**Multi-fidelity: ``scheduler="asha"``.** A proxy trial validates every ``eval_every`` steps (the
proxy's own setting, else the task's interval, else once per epoch) and reports ``SCORE`` at each
validation, a *round* (``ROUND``: Ray Tune's count of the trial's reports, one per validation). With
``asha`` the job's candidates run under Ray Tune's ``AsyncHyperBandScheduler`` (ASHA, Li et al.,
MLSys 2020) with its own semantics, in rounds: rungs at ``asha_grace_period * asha_reduction_factor**k``
rounds; a candidate that reaches a rung goes on only if its score is in the top
``1/asha_reduction_factor`` of the scores recorded at that rung so far (the first to arrive always
go on), and every candidate stops at ``asha_max_t`` rounds. ``asha_max_t=None`` (default) sets no
cap: the proxy's own end ends every candidate, and the rungs are those up to it. The score a
candidate reports at a round is its best validation so far, the checkpoint the harness would keep
if it stopped there; a stopped candidate's last one is what its method's searcher and ``select``
see, as Ray Tune hands a stopped trial's last result to its searcher: a BO surrogate or optuna takes
it as the candidate's score, unflagged (a score of less training, usually lower, which is how ASHA's
verdict reaches the searcher), and the record keeps where each candidate stopped.

The defaults, grace period 1 round and reduction factor 3: the first rung is the proxy's first
validation, where stopping saves the most, and each rung keeps the top third (Hyperband's η = 3,
Li et al., JMLR 2018), so a proxy of R rounds has rungs 1, 3, 9, ... up to R, whatever R is: no
default ties the rungs to one task's length. A task's proxy validates at its retrain interval (RTE:
every 50 steps over 20 epochs) or once per epoch (``demo/rotten_tomatoes``: 3 epochs, so one rung,
at round 1); ``eval_every`` gives a proxy more rounds. AutoPEFT's authors advertise low-fidelity
evaluation but their code keeps none (methods.md §4.3); they train every candidate 20 epochs with
early stopping on a patience of 10 epochs, which stops a candidate against its own past, not
against the others, so it is no model for the rungs.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.configs import check, check_positive_ints, option
from methods.base import PARAMS, RATIO, ROUND, SCORE, SearchProblem, SearchResult, within_budget

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

SCHEDULERS = ("fifo", "asha")
UNCAPPED_RUNGS = 20  # asha_max_t=None: rungs up to grace * factor**20 rounds (>= 2**20), more than any proxy validates


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
    scheduler: str = option("fifo", "'fifo': every candidate trains its whole proxy; 'asha': Ray Tune's ASHA "
                                    "stops weak candidates early, at rungs of validation rounds (rows labelled)")
    asha_grace_period: int = option(1, "asha: validation rounds before a candidate can be stopped (the first rung)")
    asha_reduction_factor: int = option(3, "asha: rungs at grace_period * factor**k rounds; at each, only the top "
                                           "1/factor of the candidates that reached it go on")
    asha_max_t: int | None = option(None, "asha: validation rounds after which every candidate stops (None: "
                                          "no cap, the proxy's own end)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "candidates", "asha_grace_period")
        check_positive_ints(self, "asha_reduction_factor", minimum=2)
        check_positive_ints(self, "asha_max_t", allow_none=True)
        check(self.scheduler in SCHEDULERS, f"unknown scheduler {self.scheduler!r}; valid: {', '.join(SCHEDULERS)}")
        if self.scheduler == "asha":
            check(self.candidates > 1, "scheduler='asha' needs candidates > 1 (one candidate is not proxy-trained), "
                                       f"got candidates={self.candidates}")
            check(self.asha_max_t is None or self.asha_max_t >= self.asha_grace_period,
                  f"asha_max_t ({self.asha_max_t}) cannot be below asha_grace_period ({self.asha_grace_period})")
        else:
            check(not self.asha_changes(), f"{', '.join(self.asha_changes())}: only read with scheduler='asha', "
                                           f"and scheduler is {self.scheduler!r}")

    def asha_changes(self) -> list[str]:
        """The ``asha_*`` options set away from their defaults, as ``name=value`` (without the prefix)."""
        return [f"{f.name.removeprefix('asha_')}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if f.name.startswith("asha_") and getattr(self, f.name) != f.default]

    def scheduler_label(self) -> str:
        """The row label of this scheduling ("ASHA", with the options that differ from the defaults), or ""."""
        return " ".join(["ASHA", *self.asha_changes()]) if self.scheduler == "asha" else ""

    def concurrency(self) -> int:
        """Candidates proxy-trained in parallel (default 1); a config with a parallelism option returns it."""
        return 1


def candidate_scheduler(config: BlackBoxConfig) -> TrialScheduler | None:
    """The scheduler of one job's candidates (a new one per job): None with ``scheduler="fifo"``, else
    an ``AsyncHyperBandScheduler`` over :data:`~methods.base.ROUND` (see the module docstring)."""
    if config.scheduler == "fifo":
        return None
    from ray.tune.schedulers import AsyncHyperBandScheduler

    grace, factor = config.asha_grace_period, config.asha_reduction_factor
    return AsyncHyperBandScheduler(time_attr=ROUND, metric=SCORE, mode="max", grace_period=grace,
                                   reduction_factor=factor, max_t=config.asha_max_t or grace * factor ** UNCAPPED_RUNGS)


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
