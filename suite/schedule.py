"""The plan as a Ray Tune ``Searcher``: every job a pipeline, every free slot given the work that is ready.

A job is a pipeline: a one-shot job searches in one trial, then retrains; a black-box job runs its
candidates as trials (:mod:`suite.blackbox`), its method selects, then it retrains; a manual or
transferred job only retrains. :class:`PlanSearcher` is the search algorithm of the run's one
experiment. Ray Tune asks it for a trial whenever it can start one; it answers with the first ready
work, in this order (the longest remaining pipeline first):

1. a black-box candidate, of any job under its own method's concurrency limit;
2. a one-shot search;
3. a retrain, as soon as its job's architecture is known;

``None`` while nothing is ready (every running trial holds what is left), and ``Searcher.FINISHED``
once every job is finished. Steps that need no trial are taken in the driver as soon as they can be:
a manual or transferred job's architecture, a black-box method's single draw, a black-box selection
once its candidates have ended. The searcher is saved with the experiment (the trials it started and
not yet heard back from, and each black-box search's state), so ``Tuner.restore`` resumes all of it;
what each job has found or recorded is read from the run folder (:class:`~suite.writers.Recorder`).

A trial's config is ``{"kind", "name", "trial": <trial spec>}`` (and a candidate's ``"index"`` and
``"candidate"``: its searcher's suggestion; a grid's retrain its ``"lr"``); :func:`suite.trials.run_trial`
runs it. Under ``--lr-grid`` a job's retrain is one ``RETRAIN`` trial per learning rate
(``Plan.retrain_lrs``), all ready at once; those that ended are read from the run folder
(``Recorder.lr_results``), so a resumed run starts only the others, and the pick is the Recorder's once
all have ended (:mod:`suite.learning_rate`). A black-box job's ASHA is the experiment's ``TrialScheduler``
(:mod:`suite.rungs`), which routes each candidate trial to the rungs its job's search holds (saved with
this searcher's state) and lets searches and retrains run to their end; a candidate it stops ends here
like any other.

Ray Tune starts up to as many trials at once as the cluster has slots (the driver sets
``TUNE_MAX_PENDING_TRIALS_PG``), so a suggestion may wait for a slot as a pending trial: the order
above is applied when work is suggested.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from ray.tune.search import Searcher, SearchGenerator

from suite.blackbox import BlackBoxSearch, single_draw
from suite.learning_rate import lr_text
from suite.outcomes import SearchOutcome
from suite.plan import Job
from suite.trials import CANDIDATE, ORDER, RETRAIN, SEARCH
from suite.writers import Recorder


def plan_search(recorder: Recorder) -> SearchGenerator:
    """The run's search algorithm: Ray Tune's ``SearchGenerator`` over a :class:`PlanSearcher`."""
    return ResumableSearch(PlanSearcher(recorder))


class ResumableSearch(SearchGenerator):
    """A ``SearchGenerator`` that asks its searcher again after a restore, even if it had finished:
    a resumed run may have work left (a failed job to try again, a record removed by hand)."""

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False


class PlanSearcher(Searcher):
    """Suggests the run's trials from its plan (see the module docstring)."""

    def __init__(self, recorder: Recorder):
        super().__init__()  # no metric: each kind of trial reports its own
        self.recorder, self.plan = recorder, recorder.plan
        self.live: dict[str, tuple[str, str]] = {}  # trial id -> (run id, kind): started, not yet ended
        self.searches: dict[str, BlackBoxSearch] = {}  # run id -> its black-box search
        self.lrs: dict[str, float] = {}  # trial id -> its learning rate: a grid's retrain, started, not yet ended
        self._sites = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sites": None}

    @property
    def sites(self):
        if self._sites is None:
            from suite.backbones import backbone_sites

            self._sites = backbone_sites(self.plan.backbone)
        return self._sites

    # ---- Ray Tune's Searcher -----------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return True  # the plan is the space: a Tuner's metric or param_space changes nothing

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        jobs = self.recorder.unfinished()
        for job in jobs:
            self._advance(job)
        jobs = self.recorder.unfinished()
        if not jobs:
            return Searcher.FINISHED
        for kind in ORDER:
            for job in jobs:
                config = self._trial(job, kind, trial_id)
                if config is not None:
                    self.live[trial_id] = (job.run_id, kind)
                    if "lr" in config:
                        self.lrs[trial_id] = config["lr"]
                    return config
        if not self.live:  # every unfinished job has ready work or a running trial, or this is a bug
            raise RuntimeError(f"no trial to run and none running for {', '.join(j.run_id for j in jobs)}")
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """A trial ended (after its retries). A candidate's result goes to its search; what a search or
        retrain delivered is written by the run's callback (:mod:`suite.writers`)."""
        run_id, kind = self.live.pop(trial_id, (None, None))
        self.lrs.pop(trial_id, None)
        if kind == CANDIDATE and run_id in self.searches and not self.recorder.finished(run_id):
            job = self.recorder.jobs[run_id]
            self._guarded(job, lambda: self.searches[run_id].complete(trial_id, result, error))

    # ---- a job's next step -------------------------------------------------------------------------
    def _advance(self, job: Job) -> None:
        """Take the steps of ``job`` that need no trial."""
        if job.run_id in self.recorder.found:
            if self.plan.lr_grid:  # every rate ended before a crash wrote the record: write it now
                self.recorder.settle_grid(job)
            return
        if job.kind == "manual":
            arch = self.plan.method(job.method).architecture(self.sites, self.plan.backbone)
            self.recorder.save_found(job, SearchOutcome(arch.to_dict(), 0.0, {}))
        elif job.kind == "transfer":  # a given architecture: nothing to search
            self.recorder.save_found(job, SearchOutcome(self.plan.transfer["architecture"], 0.0,
                                                        {"transfer": self.plan.transfer["source"]}))
        elif job.kind == "black-box":
            self._guarded(job, lambda: self._advance_black_box(job))

    def _advance_black_box(self, job: Job) -> None:
        if job.run_id not in self.searches:
            if self.plan.method(job.method).num_candidates() == 1:
                self.recorder.save_found(job, single_draw(job, self.plan, self.sites))
                return
            self.recorder.log(f"{job.method} proposes {self.plan.method(job.method).num_candidates()} "
                              f"candidates for {job.run_id}")
            self.searches[job.run_id] = BlackBoxSearch(job, self.plan, self.sites)
        search = self.searches[job.run_id]
        if search.ended:
            self.recorder.save_found(job, search.outcome())

    def _guarded(self, job: Job, step) -> Any:
        """``step()`` of a black-box search; one that raises ends its job with a failed record, not the run."""
        try:
            return step()
        except Exception as e:  # noqa: BLE001 - one failed job must not stop the sweep
            if job.run_id in self.searches:
                self.searches[job.run_id].failed = True
            self.recorder.write_failed(job, f"search failed: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
            return None

    def _running(self, job: Job, kind: str) -> bool:
        return (job.run_id, kind) in self.live.values()

    def _trial(self, job: Job, kind: str, trial_id: str) -> dict[str, Any] | None:
        """The config of a ``kind`` trial of ``job`` if one is ready, else None."""
        found = self.recorder.found.get(job.run_id)
        if found is not None:
            return self._retrain(job, found.architecture) if kind == RETRAIN else None
        if self.recorder.finished(job.run_id):
            return None
        if kind == SEARCH and job.kind == "one-shot" and not self._running(job, SEARCH):
            return self._config(SEARCH, f"search-{job.run_id}", self.plan.trial_spec(job))
        if kind == CANDIDATE and job.run_id in self.searches:
            candidate = self._guarded(job, lambda: self.searches[job.run_id].suggest(trial_id))
            if candidate is not None:
                index, suggestion = candidate
                return self._config(CANDIDATE, f"candidate-{job.run_id}-{index}", self.plan.trial_spec(job),
                                    index=index, candidate=suggestion)
        return None

    def _retrain(self, job: Job, architecture: dict) -> dict[str, Any] | None:
        """The job's next retrain: its one trial, or the next rate of its grid that has neither ended nor started."""
        name = f"retrain-{job.run_id}"
        if not self.plan.lr_grid:
            (lr,) = self.plan.retrain_lrs(architecture)
            return None if self._running(job, RETRAIN) else self._config(
                RETRAIN, name, self.plan.trial_spec(job, architecture, lr))
        started = {self.lrs[t] for t, (run_id, _) in self.live.items() if run_id == job.run_id and t in self.lrs}
        ended = self.recorder.lr_results(job)
        for lr in self.plan.retrain_lrs(architecture):
            if lr not in started and lr not in ended:
                return self._config(RETRAIN, f"{name}-lr{lr_text(lr)}", self.plan.trial_spec(job, architecture, lr),
                                    lr=lr)
        return None

    @staticmethod
    def _config(kind: str, name: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"kind": kind, "name": name, "trial": spec, **extra}

    # ---- saved with the experiment -----------------------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        state = {"live": self.live, "lrs": self.lrs,
                 "searches": {run_id: s.state() for run_id, s in self.searches.items()}}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        """The state saved with the experiment. A black-box search that ended without an architecture
        starts over: its job's failed record is tried again, as every failed job is on ``--resume``."""
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.live, self.lrs = state["live"], state.get("lrs", {})
        self.searches = {run_id: BlackBoxSearch.from_state(self.recorder.jobs[run_id], self.plan, self.sites, s)
                         for run_id, s in state["searches"].items() if not s["failed"]}
