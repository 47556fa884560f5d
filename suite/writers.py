"""What a run keeps as its trials end: the searches found and the records, written into the run
folder (:mod:`suite.rundir`) by Ray Tune callbacks, or from a result grid for what a restored
experiment finished without them.

* :class:`Recorder` holds a run's finished searches (:class:`~suite.outcomes.SearchOutcome`) and
  writes its records (:func:`suite.records.build_record`), ok or failed, each as soon as it is known.
* :class:`SearchWriter` and :class:`RetrainWriter` turn what a stage's trial reported (typed by
  :mod:`suite.outcomes`) into those, and a crashed trial into a failed record with its error's line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from suite.outcomes import RETRAIN_KEY, SEARCH_KEY, SearchOutcome, unpacked
from suite.plan import Job, Plan
from suite.records import build_record, environment, write_record
from suite.rundir import RunDir, load_records


class Recorder:
    """The searches a run found and the records it wrote, in the run folder ``out``."""

    def __init__(self, plan: Plan, out: Path, resources: dict[str, float], log=print):
        self.plan, self.run, self.log = plan, RunDir(out), log
        self.env = environment()
        self.env["hardware"] = {**self.env["hardware"], "cpus_per_trial": resources["cpu"],
                                "gpus_per_trial": resources["gpu"]}
        self.jobs = {job.run_id: job for job in plan.jobs()}
        self.found: dict[str, SearchOutcome] = {}

    # ---- searches found ----------------------------------------------------------------------------
    def save_found(self, job: Job, outcome: SearchOutcome) -> None:
        """Keep a finished search, and save it."""
        self.found[job.run_id] = outcome
        self.run.save_search(job.run_id, outcome)

    def load_found(self, jobs: list[Job]) -> None:
        """What earlier runs of this folder found (``--resume``), read once."""
        for job in jobs:
            if job.run_id not in self.found and (outcome := self.run.load_search(job.run_id)) is not None:
                self.found[job.run_id] = outcome

    # ---- records -----------------------------------------------------------------------------------
    def done(self) -> set[str]:
        """Run ids that already have an ``ok`` record."""
        return self._records("ok")

    def failed(self) -> set[str]:
        return self._records("failed")

    def _records(self, status: str) -> set[str]:
        if not self.run.records.is_dir():
            return set()
        return {r["run_id"] for r in load_records(self.run.root, status=status)}

    def _record(self, job: Job, status: str, error: str | None, retrain=None, files: dict | None = None):
        method = self.plan.method(job.method)
        return build_record(
            job, status, error=error, retrain=retrain, backbone=self.plan.backbone,
            backbone_params=self.plan.backbone_params, harness=self.plan.harness_overrides(),
            method_config=method.config_dict() if method else {}, recipe=self.plan.retrain_recipe, files=files,
            environment=self.env, search=self.found.get(job.run_id),
        )

    def write_ok(self, job: Job, retrain, files: dict | None = None) -> None:
        """The record of an ok retrain (a :class:`~suite.harness.RetrainResult`)."""
        path = write_record(self.run.root, self._record(job, "ok", None, retrain, files))
        self.log(f"record {path.name}: test {retrain.test}")

    def write_failed(self, job: Job, error: str, attempts: dict[str, int] | None = None) -> None:
        """A failed record; ``attempts``: the attempts of the stage that failed (``{"search": 2}``)."""
        record = self._record(job, "failed", error)
        for stage, n in (attempts or {}).items():
            record[stage] = {**record[stage], "attempts": n}
        write_record(self.run.root, record)
        self.log(f"record {job.run_id}: FAILED ({error.splitlines()[0][:200]})")


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
    """Writes what a stage's trial delivered as it ends (or a failed record); ``written`` tells which
    trials of a result grid were already handled by the callback."""

    stage: str
    result_key: str  # what an ok trial's last result holds

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def _job(self, trial) -> Job:
        return self.recorder.jobs[trial.config["trial"]["run_id"]]

    def complete(self, trial) -> None:
        result = trial.last_result or {}
        if self.result_key not in result:
            return self.error(trial)
        self.save(self._job(trial), result[self.result_key], trial)

    def error(self, trial) -> None:
        # Tune has counted the last failure when it reports the trial's error: every attempt failed
        attempts = getattr(trial, "num_failures", None)  # None: a trial read back from a result grid
        self.recorder.write_failed(self._job(trial), f"{self.stage} failed: {_error_text(trial)}",
                                   {self.stage: attempts} if attempts else None)

    def save(self, job: Job, reported: str, trial) -> None:
        raise NotImplementedError

    def written(self, run_ids: list[str]) -> set[str]:
        raise NotImplementedError


class SearchWriter(Writer):
    """Keeps (and saves) each search's outcome."""

    stage, result_key = "search", SEARCH_KEY

    def written(self, run_ids: list[str]) -> set[str]:
        failed = self.recorder.failed()
        return {r for r in run_ids if r in failed or r in self.recorder.found}

    def save(self, job: Job, reported: str, trial) -> None:
        self.recorder.save_found(job, unpacked(SearchOutcome, reported))


class RetrainWriter(Writer):
    """Writes each record, with the weights and predictions of the trial's checkpoint filed beside it."""

    stage, result_key = "retrain", RETRAIN_KEY

    def written(self, run_ids: list[str]) -> set[str]:
        return set(run_ids) & (self.recorder.done() | self.recorder.failed())

    def save(self, job: Job, reported: str, trial) -> None:
        from suite.harness import RetrainResult

        retrain = dataclasses.replace(unpacked(RetrainResult, reported),
                                      attempts=1 + getattr(trial, "num_failures", 0))
        files: dict[str, dict] = {}
        if trial.checkpoint is not None:  # wherever the run's storage is
            with trial.checkpoint.as_directory() as folder:
                files = self.recorder.run.file_checkpoint(job.run_id, Path(folder))
        self.recorder.write_ok(job, retrain, files)


def callback(writer: Writer):
    """A Ray Tune callback that hands each ended trial to ``writer``."""
    from ray import tune

    class WriterCallback(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            writer.complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            writer.error(trial)

    return WriterCallback()


class ResultTrial:
    """A ``ray.tune.Result`` seen through the attributes the writers read from a trial."""

    def __init__(self, result: Any):
        # a trial whose actor never started has no config: its folder is named after its run id
        self.config = result.config or {"trial": {"run_id": Path(result.path).name}}
        self.last_result, self._error, self.checkpoint = result.metrics, result.error, result.checkpoint

    error_file = None

    def get_error(self):
        return self._error
