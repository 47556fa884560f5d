"""One black-box job's search inside a run: its method's ``Searcher`` proposes candidates, each a trial
of the run's one experiment, at most the method's ``max_concurrent()`` at once (Ray Tune's
``ConcurrencyLimiter``: the limit bounds this job's candidates, not the run); once every candidate
has ended, the method's ``select`` picks the architecture. A method may stop its candidates early
(``BlackBoxMethod.make_scheduler``: ASHA): the search holds its job's own scheduler, which the run's
trial scheduler (:mod:`suite.rungs`) consults for this job's candidates only, and the record keeps
each candidate's last rung (``rungs``: the validation round and step it reached and its score there).

:class:`BlackBoxSearch` is driven by the run's searcher (:class:`suite.schedule.PlanSearcher`), and
saved with it (:meth:`BlackBoxSearch.state`: the candidates suggested, the results of those that
ended, the limiter's and the method's searcher's own state, and its scheduler's rungs), so a resumed
run keeps its finished candidates, its searcher's observations and the scores its rungs recorded. A
method with one candidate needs no trial: :func:`single_draw` takes its searcher's one suggestion as it is.
"""

from __future__ import annotations

import datetime
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from methods.base import PARAMS, RATIO, ROUND, SCORE, SearchProblem
from suite.outcomes import SearchOutcome
from suite.plan import Job, Plan
from suite.trials import PLACEMENT


def search_problem(job: Job, plan: Plan, sites) -> SearchProblem:
    """The space, budget and seed a black-box job searches."""
    from spaces import build_space

    space = build_space(plan.space, sites, plan.sizes, backbone_name=plan.backbone)
    return SearchProblem(space, job.budget_params, job.seed)


def single_draw(job: Job, plan: Plan, sites) -> SearchOutcome:
    """A method with one candidate: its searcher's suggestion, not proxy-trained (nothing to choose)."""
    import time

    method, start = plan.method(job.method), time.perf_counter()
    problem = search_problem(job, plan, sites)
    arch = method.candidate(problem.space, method.make_searcher(problem, metric=SCORE, mode="max").suggest("only"))
    return SearchOutcome(arch.to_dict(), time.perf_counter() - start, {"candidates": 1})


def candidate_result(config: dict[str, Any], result: dict[str, Any] | None, error: bool) -> dict[str, Any]:
    """What ``BlackBoxMethod.select`` reads of one ended candidate (a failed one: a NaN score), where
    and how long it ran, and how far it trained: its last report's validation ``round`` and ``step``
    of the proxy's ``steps`` (fewer when its scheduler stopped it)."""
    metrics = result or {}
    score = metrics.get(SCORE)
    placement = metrics.get(PLACEMENT)
    return {"config": config, SCORE: math.nan if error or score is None else float(score),
            RATIO: metrics.get(RATIO, math.nan), PARAMS: metrics.get(PARAMS, math.inf),
            "error": "the candidate's trial failed" if error else None, "seconds": metrics.get("time_total_s"),
            "peak_memory_mb": metrics.get("peak_memory_mb"), PLACEMENT: json.loads(placement) if placement else None,
            "round": metrics.get(ROUND), "step": metrics.get("step"), "steps": metrics.get("total")}


def last_rung(index: int, result: dict[str, Any]) -> dict[str, Any]:
    """Where candidate ``index`` ended: its round, step, planned steps, score and whether it was stopped
    before the end of its proxy."""
    step, steps = result["step"], result["steps"]
    return {"index": index, "round": result["round"], "step": step, "steps": steps, "score": result[SCORE],
            "stopped_early": step is not None and steps is not None and step < steps}


def span_seconds(placements: list[dict[str, Any]]) -> float:
    """Seconds from the first start to the last end of ``placements`` (ISO times)."""
    starts = [datetime.datetime.fromisoformat(p["started_at"]) for p in placements]
    ends = [datetime.datetime.fromisoformat(p["ended_at"]) for p in placements]
    return (max(ends) - min(starts)).total_seconds() if placements else 0.0


class BlackBoxSearch:
    """The candidates of one black-box job (see the module docstring)."""

    def __init__(self, job: Job, plan: Plan, sites):
        from ray.tune.search import ConcurrencyLimiter

        self.job, self.method = job, plan.method(job.method)
        self.problem = search_problem(job, plan, sites)
        self.op_options = plan.trial_spec(job)["op_options"]
        self.size = self.method.num_candidates()
        self.limiter = ConcurrencyLimiter(self.method.make_searcher(self.problem, metric=SCORE, mode="max"),
                                          max_concurrent=self.method.max_concurrent())
        self.scheduler = self.method.make_scheduler()  # this job's own rungs, or None
        self.suggested: dict[str, tuple[int, dict[str, Any]]] = {}  # trial id -> (index, suggestion)
        self.results: dict[int, dict[str, Any]] = {}                 # index -> its candidate_result
        self.exhausted = False  # the method's searcher has nothing more to propose
        self.failed = False     # the search ended without an architecture (its job has a failed record)

    def suggest(self, trial_id: str) -> tuple[int, dict[str, Any]] | None:
        """The next candidate ``(index, suggestion)``, or None (all proposed, or this job's limit reached)."""
        from ray.tune.search import Searcher

        if self.exhausted or len(self.suggested) >= self.size:
            return None
        suggestion = self.limiter.suggest(trial_id)
        if suggestion == Searcher.FINISHED:
            self.exhausted = True
            return None
        if suggestion is None:
            return None
        self.suggested[trial_id] = (len(self.suggested), suggestion)
        return self.suggested[trial_id]

    def complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        """A candidate's trial ended: its result goes to the method's searcher and to the selection."""
        index, suggestion = self.suggested[trial_id]
        if index not in self.results:
            self.limiter.on_trial_complete(trial_id, result=result, error=error)
            self.results[index] = candidate_result(suggestion, result, error)

    @property
    def ended(self) -> bool:
        """Every candidate there will be has ended."""
        return (self.exhausted or len(self.suggested) >= self.size) and len(self.results) == len(self.suggested)

    def outcome(self) -> SearchOutcome:
        """The method's selection over the ended candidates (raises when it finds nothing), with the
        candidates' compute, peak memory and placements; its seconds: the candidates' span."""
        results = [self.results[i] for i in sorted(self.results)]
        selected = self.method.select(self.problem, results)
        placements = [r[PLACEMENT] for r in results if r[PLACEMENT]]
        peaks = [r["peak_memory_mb"] for r in results if r["peak_memory_mb"] is not None]
        info = {**selected.info, "op_options": self.op_options,  # the retrain recipe's: the proxies trained those
                "trial_seconds_total": sum(r["seconds"] or 0 for r in results),
                "peak_memory_mb": max(peaks) if peaks else None,  # the largest candidate trial's
                "placements": placements, "scheduler": self.method.config.scheduler,
                "rungs": [last_rung(i, self.results[i]) for i in sorted(self.results)]}
        info["stopped_early"] = sum(r["stopped_early"] for r in info["rungs"])
        return SearchOutcome(selected.architecture.to_dict(), span_seconds(placements), info)

    # ---- saved with the run's searcher -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "searcher"
            self.limiter.save(str(path))
            searcher = path.read_bytes()
        return {"suggested": self.suggested, "results": self.results, "exhausted": self.exhausted,
                "failed": self.failed, "limiter": self.limiter.get_state(), "searcher": searcher,
                "scheduler": self.scheduler}

    @classmethod
    def from_state(cls, job: Job, plan: Plan, sites, state: dict[str, Any]) -> BlackBoxSearch:
        search = cls(job, plan, sites)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "searcher"
            path.write_bytes(state["searcher"])
            search.limiter.restore(str(path))
        search.limiter.set_state(state["limiter"])
        search.suggested, search.results = state["suggested"], state["results"]
        search.exhausted, search.failed = state["exhausted"], state["failed"]
        search.scheduler = state.get("scheduler", search.scheduler)  # a state saved before schedulers: new rungs
        return search
