"""The run's trial scheduler: each black-box job's candidates under that job's own scheduler (ASHA).

A run is one Ray Tune experiment with trials of every kind and job (:mod:`suite.schedule`), and Ray
Tune takes one ``TrialScheduler`` per experiment. **Decision:** that scheduler is a router,
:class:`JobScheduler`. A black-box job whose method asks for early stopping
(``BlackBoxMethod.make_scheduler``: ``autopeft.scheduler=asha``, the same for ``optuna`` and
``apet``) gets its own ``AsyncHyperBandScheduler``, held by the job's search
(:class:`~suite.blackbox.BlackBoxSearch`); the router hands each event of a candidate trial of that
job (found by ``config["trial"]["run_id"]``, and only if that search suggested it) to that instance,
and lets every other trial run to its end (``CONTINUE``): one-shot searches, retrains, the candidates
of full-fidelity jobs. One job's rungs therefore only ever hold its own candidates' scores, and its
verdicts never reach another job's trials. Ray Tune hands a stopped candidate's last result to the
run's searcher, which passes it on to the job's search as the candidate's result.

**Resume.** Ray Tune does not save a trial scheduler with the experiment (``Tuner.restore`` brings
back the one pickled when the run began). Each job's scheduler is saved with its search instead, in
the run's searcher's state, which Ray Tune does save and restores in place; the router reaches the
searches through that searcher (the two are pickled together in the experiment's ``tuner.pkl``, so
the restored router holds the restored searcher). So the rungs resume with the candidates they judged,
consistent with the searcher's view of which candidates ended; a candidate that was running when the
driver died trains again from the start (a proxy keeps no checkpoint) and passes rungs it had
already reached without a new verdict there (ASHA decides once per candidate and rung).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from suite.trials import CANDIDATE

if TYPE_CHECKING:
    from ray.tune.search import SearchGenerator

    from suite.schedule import PlanSearcher


def job_scheduler(search: SearchGenerator) -> JobScheduler:
    """The run's trial scheduler, routing by the jobs of ``search``'s plan searcher."""
    return JobScheduler(search.searcher)


class JobScheduler(FIFOScheduler):
    """Hands each candidate trial to its job's own scheduler, if it has one (see the module docstring).

    Trials start in Ray Tune's order (``FIFOScheduler``: the order the plan suggested them)."""

    def __init__(self, searcher: PlanSearcher):
        super().__init__()
        self.searcher = searcher

    def _job_scheduler(self, trial: Trial) -> TrialScheduler | None:
        config = trial.config or {}
        if config.get("kind") != CANDIDATE:
            return None
        search = self.searcher.searches.get(config["trial"]["run_id"])
        if search is None or trial.trial_id not in search.suggested:  # not of this job's search as it stands
            return None
        return search.scheduler

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        if trial.status not in (Trial.TERMINATED, Trial.ERROR) and (job := self._job_scheduler(trial)):
            job.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        job = self._job_scheduler(trial)
        return job.on_trial_result(tune_controller, trial, result) if job else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        if job := self._job_scheduler(trial):
            job.on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        if job := self._job_scheduler(trial):
            job.on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        if job := self._job_scheduler(trial):
            job.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        jobs = [f"{run_id}: {search.scheduler.debug_string()}" for run_id, search in self.searcher.searches.items()
                if search.scheduler is not None]
        return "\n".join(["Each black-box job's candidates under its own scheduler; every other trial FIFO", *jobs])
