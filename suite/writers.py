"""What a run keeps as its trials end: the searches found and the records, written into the run
folder (:mod:`suite.rundir`) by a Ray Tune callback.

* :class:`Recorder` holds a run's finished searches (:class:`~suite.outcomes.SearchOutcome`) and
  writes its records (:func:`suite.records.build_record`), ok or failed, each as soon as it is known;
  it knows which jobs are finished (an ok record before this session, or a record written in it).
* :class:`SearchWriter` and :class:`RetrainWriter` turn what a trial reported (typed by
  :mod:`suite.outcomes`) into those, and a crashed trial into a failed record with its error's line.
  Under ``--lr-grid`` a retrain trial is one learning rate of its job: kept in the run folder
  (:class:`~suite.learning_rate.LrTrials`) until every rate of the job has ended, then the best
  validation score's is the record (:meth:`Recorder.settle_grid`).
  A trial whose job is already settled (a restored trial that had finished after the experiment's
  last saved state) is not written again: a finished record stays as it is.

Ray Tune pickles the callback and the run's searcher, which share one :class:`Recorder`, with the
experiment (for ``Tuner.restore``); what the Recorder knows of the run folder is not pickled but read
back from the folder when first needed, so a restored run sees the folder as it is now.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from suite.learning_rate import LrTrials, grid_record, lr_text, pick, trial_lr
from suite.outcomes import RETRAIN_KEY, SEARCH_KEY, RetrainResult, SearchOutcome, unpacked
from suite.plan import Job, Plan
from suite.records import build_record, environment, write_record
from suite.rundir import RunDir, load_records
from suite.trials import RETRAIN, SEARCH


class Recorder:
    """The searches a run found and the records it wrote, in the run folder ``out``."""

    def __init__(self, plan: Plan, out: Path, resources: dict[str, float], log=print):
        self.plan, self.run, self.resources, self.log = plan, RunDir(out), resources, log
        self.jobs = {job.run_id: job for job in plan.jobs()}
        self._found: dict[str, SearchOutcome] | None = None  # read from the folder when first needed
        self._ok_before: set[str] | None = None              # jobs with an ok record when the session began
        self._ended: dict[str, str] = {}                     # run id -> status of a record written this session
        self._env: dict[str, Any] | None = None
        self._lr_trials: dict[str, dict] = {}                # run id -> its grid's ended trials, read when needed

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the experiment: the plan and the folder, not what this session read or wrote."""
        return {**self.__dict__, "_found": None, "_ok_before": None, "_ended": {}, "_env": None, "_lr_trials": {}}

    @property
    def env(self) -> dict[str, Any]:
        """Where this session runs (every record's ``environment``)."""
        if self._env is None:
            self._env = environment()
            self._env["hardware"] = {**self._env["hardware"], "cpus_per_trial": self.resources["cpu"],
                                     "gpus_per_trial": self.resources["gpu"]}
        return self._env

    # ---- searches found ----------------------------------------------------------------------------
    @property
    def found(self) -> dict[str, SearchOutcome]:
        """The architecture of every job whose search has ended well (this session or an earlier one)."""
        if self._found is None:
            self._found = {run_id: outcome for run_id in self.jobs
                           if (outcome := self.run.load_search(run_id)) is not None}
        return self._found

    def save_found(self, job: Job, outcome: SearchOutcome) -> None:
        """Keep a finished search, and save it."""
        self.found[job.run_id] = outcome
        self.run.save_search(job.run_id, outcome)

    # ---- records -----------------------------------------------------------------------------------
    def done(self) -> set[str]:
        """Run ids that have an ``ok`` record in the folder now."""
        if not self.run.records.is_dir():
            return set()
        return {r["run_id"] for r in load_records(self.run.root, status="ok")}

    def finished(self, run_id: str) -> bool:
        """An ok record from before this session, or any record written in it (a failed job is tried
        again by the next ``--resume``)."""
        if self._ok_before is None:
            self._ok_before = self.done()
        return run_id in self._ok_before or run_id in self._ended

    def ok(self, run_id: str) -> bool:
        """An ok record, from before this session or written in it."""
        return self.finished(run_id) and self._ended.get(run_id, "ok") == "ok"

    def unfinished(self) -> list[Job]:
        """The plan's jobs that are not :meth:`finished`, in the plan's order."""
        return [job for run_id, job in self.jobs.items() if not self.finished(run_id)]

    def progress(self) -> tuple[int, int, int]:
        """``(ok, failed, all)`` jobs of the plan, as this session knows them."""
        failed = sum(status == "failed" for status in self._ended.values())
        return len(self.jobs) - len(self.unfinished()) - failed, failed, len(self.jobs)

    def _record(self, job: Job, status: str, error: str | None, retrain=None, files: dict | None = None,
                lr: float | None = None):
        method = self.plan.method(job.method)
        return build_record(
            job, status, error=error, retrain=retrain, backbone=self.plan.backbone,
            backbone_params=self.plan.backbone_params, harness=self.plan.harness_overrides(),
            method_config=method.config_dict() if method else {}, recipe=self.plan.retrain_recipe, files=files,
            environment=self.env, search=self.found.get(job.run_id), lr=lr,
        )

    def write_ok(self, job: Job, retrain, lr: float, files: dict | None = None, lr_grid: dict | None = None) -> None:
        """The record of an ok retrain (a :class:`~suite.outcomes.RetrainResult`) at ``lr``; ``lr_grid``: the
        grid's every rate (:func:`~suite.learning_rate.grid_record`) when it was the best of several."""
        record = self._record(job, "ok", None, retrain, files, lr)
        if lr_grid is not None:
            record["retrain"]["lr_grid"] = lr_grid
        path = write_record(self.run.root, record)
        self._ended[job.run_id] = "ok"
        self.log(f"record {path.name}: test {retrain.test}")

    def write_failed(self, job: Job, error: str, attempts: dict[str, int] | None = None) -> None:
        """A failed record; ``attempts``: the attempts of the stage that failed (``{"search": 2}``)."""
        record = self._record(job, "failed", error)
        for stage, n in (attempts or {}).items():
            record[stage] = {**record[stage], "attempts": n}
        write_record(self.run.root, record)
        self._ended[job.run_id] = "failed"
        self.log(f"record {job.run_id}: FAILED ({error.splitlines()[0][:200]})")

    # ---- a learning-rate grid -----------------------------------------------------------------------
    def lr_results(self, job: Job) -> dict:
        """The ended trials of ``job``'s grid: learning rate -> :class:`~suite.outcomes.RetrainResult`."""
        if job.run_id not in self._lr_trials:
            self._lr_trials[job.run_id] = LrTrials(self.run, job.run_id).load()
        return self._lr_trials[job.run_id]

    def save_lr_trial(self, job: Job, retrain, lr: float, checkpoint: Path | None) -> None:
        """Keep one ended rate ``lr`` of ``job``'s grid (its result and checkpoint's files); the record once
        all have."""
        LrTrials(self.run, job.run_id).save(retrain, lr, checkpoint)
        self.lr_results(job)[lr] = retrain
        self.log(f"{job.run_id} at lr {lr_text(lr)}: validation {retrain.validation}")
        self.settle_grid(job)

    def settle_grid(self, job: Job) -> None:
        """Once every rate of ``job``'s grid has ended (and the job is not finished): its record, the best
        validation score's retrain with its weights and predictions; the grid's trials are then deleted."""
        results = self.lr_results(job)
        if self.finished(job.run_id) or not set(self.plan.lr_grid) <= set(results):
            return
        from suite.tasks import get_task

        selection = get_task(job.task).selection_metric
        results = {lr: results[lr] for lr in self.plan.lr_grid}
        chosen = pick(results, selection)
        trials = LrTrials(self.run, job.run_id)
        files = self.run.file_checkpoint(job.run_id, trials.of(chosen))
        self.write_ok(job, results[chosen], chosen, files, grid_record(results, chosen, selection))
        trials.drop()
        self._lr_trials.pop(job.run_id, None)


def _summarise_error(trace: str) -> str:
    """The exception line first (the last unindented line of a traceback), then the trace's tail."""
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if not line.startswith((" ", "\t"))), "trial failed")
    return f"{last}\n{trace.strip()[-3000:]}"


def _error_text(trial) -> str:
    """Ray writes the error file into the trial's local folder before ``on_trial_error`` fires, but
    ``Trial.get_error`` reads the storage copy, which is only synced later: read the local one."""
    try:
        path = trial.error_file
        trace = Path(path).read_text() if path and Path(path).exists() else trial.get_error()
        return _summarise_error(str(trace)) if trace else "trial failed (see the Ray trial logs)"
    except Exception:  # noqa: BLE001 - the error text is best effort; the failure itself is recorded
        return "trial failed (see the Ray trial logs)"


class Writer:
    """Writes what a trial of one kind delivered as it ends (or a failed record), unless its job is
    already :meth:`settled`."""

    stage: str
    result_key: str  # what an ok trial's last result holds

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def _job(self, trial) -> Job:
        return self.recorder.jobs[trial.config["trial"]["run_id"]]

    def settled(self, trial) -> bool:
        """Whether the trial's job already has what a trial of this kind delivers."""
        return self.recorder.finished(self._job(trial).run_id)

    def complete(self, trial) -> None:
        result = trial.last_result or {}
        if self.result_key not in result:
            return self.error(trial)
        if not self._skip(trial):
            self.save(self._job(trial), result[self.result_key], trial)

    def error(self, trial) -> None:
        if not self._skip(trial):  # Tune has counted the last failure when it reports the error: every attempt failed
            attempts = trial.num_failures
            self.recorder.write_failed(self._job(trial), f"{self.what(trial)} failed: {_error_text(trial)}",
                                       {self.stage: attempts} if attempts else None)

    def what(self, trial) -> str:
        """The trial's stage, as its failed record says it."""
        return self.stage

    def _skip(self, trial) -> bool:
        if self.settled(trial):
            self.recorder.log(f"{trial.config['name']} ended again after a resume: "
                              f"{self._job(trial).run_id} keeps what it has")
            return True
        return False

    def save(self, job: Job, reported: str, trial) -> None:
        raise NotImplementedError


class SearchWriter(Writer):
    """Keeps (and saves) each one-shot search's outcome."""

    stage, result_key = SEARCH, SEARCH_KEY

    def settled(self, trial) -> bool:
        return self._job(trial).run_id in self.recorder.found or super().settled(trial)

    def save(self, job: Job, reported: str, trial) -> None:
        self.recorder.save_found(job, unpacked(SearchOutcome, reported))


class RetrainWriter(Writer):
    """Writes each record, with the weights and predictions of the trial's checkpoint filed beside it;
    a grid's trial (``config["lr"]``) is kept until its job's every rate has ended."""

    stage, result_key = RETRAIN, RETRAIN_KEY

    def settled(self, trial) -> bool:
        """A grid's rate is kept unless its job has an ok record or that rate had ended already (a job that
        failed in this session at another rate keeps it for ``--resume``)."""
        if "lr" not in trial.config:
            return super().settled(trial)
        job = self._job(trial)
        return self.recorder.ok(job.run_id) or trial.config["lr"] in self.recorder.lr_results(job)

    def what(self, trial) -> str:
        return f"retrain at lr {lr_text(trial.config['lr'])}" if "lr" in trial.config else self.stage

    def save(self, job: Job, reported: str, trial) -> None:
        retrain = dataclasses.replace(unpacked(RetrainResult, reported), attempts=1 + trial.num_failures)
        with contextlib.ExitStack() as stack:
            folder = None if trial.checkpoint is None else Path(stack.enter_context(trial.checkpoint.as_directory()))
            if "lr" in trial.config:  # one rate of the job's grid
                self.recorder.save_lr_trial(job, retrain, trial.config["lr"], folder)
            else:  # wherever the run's storage is
                files = self.recorder.run.file_checkpoint(job.run_id, folder) if folder is not None else {}
                self.recorder.write_ok(job, retrain, trial_lr(trial.config["trial"]), files)


def callback(recorder: Recorder):
    """A Ray Tune callback that hands each ended search or retrain trial to its writer (a black-box
    candidate is the run's searcher's: :mod:`suite.blackbox`)."""
    from ray import tune

    writers: dict[str, Writer] = {SEARCH: SearchWriter(recorder), RETRAIN: RetrainWriter(recorder)}

    class WriterCallback(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if (writer := writers.get(trial.config["kind"])) is not None:
                writer.complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            if (writer := writers.get(trial.config["kind"])) is not None:
                writer.error(trial)

    return WriterCallback()
