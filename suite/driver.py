"""The driver of a run: one Ray Tune experiment for the whole plan, Ctrl+C and resume.

**Decision: one experiment whose searcher is the plan.** Every job is a pipeline (search, then
retrain; a manual or transferred job only retrains), and the run keeps every free slot busy with
whatever work is ready: black-box candidates of several jobs side by side, a job's retrain as soon
as its architecture is chosen, other jobs' searches meanwhile. There are no stages and no barrier
between them. The run is one ``Tuner`` whose ``search_alg`` is :class:`~suite.schedule.PlanSearcher`:
Ray Tune asks it for a trial whenever a slot is free, and it answers with the next ready work (a
candidate from a black-box job's own searcher, under that method's ``max_concurrent``; a one-shot
search; a retrain), ``None`` while nothing is ready, ``Searcher.FINISHED`` when every job is
finished. One trainable (:func:`suite.trials.run_trial`) runs a trial of each kind, a function
trainable that takes its spec from its config. This is Ray Tune's own contract, so its scheduling,
``FailureConfig`` retries (a lost node, a crashed trial), placement, loggers and ``Tuner.restore``
serve all of it; the other designs considered (a Tuner per job in threads, or Ray tasks and a
home-made queue) would each rebuild part of that. Its ``TrialScheduler`` (:mod:`suite.rungs`) stops a
black-box job's weak candidates early where its method asks for it (ASHA), each job under its own rungs.

**Resume.** The experiment's name is the same for every session of a plan (:attr:`Runner.experiment`),
and ``resume=True`` restores it with ``Tuner.restore``: unfinished trials run again under their ids,
the searcher's saved state says which trials it started and each black-box search's candidates,
results and method searcher's observations. What a job has found and recorded is read from the run
folder, never from what Tune pickled: a job with an ok record is finished; a job whose record says
failed is tried again from what it kept (its architecture, else its search from the start). Tune saves
the experiment periodically (its own adaptive period) and on Ctrl+C; after a ``kill -9``, a trial that
ended after the last save runs again, and its result is dropped because its job already has it (a
finished record stays byte for byte; nothing is recorded twice), while a trial started after it is
simply suggested again.

**Trial processes.** Ray Tune reuses a trial's process for the next trial (``reuse_actors``) on Linux,
where :func:`suite.trials.fresh_start` resets the process's peak memory before each trial: a new
process per trial costs a slot the import of torch and Ray Tune each time. ``TUNE_MAX_PENDING_TRIALS_PG``
is set to the cluster's slots, so Tune fills them all at once rather than one actor start after another.

What a trial ends in is written by :mod:`suite.writers` (a Tune callback) into the run folder, whose
layout :mod:`suite.rundir` owns. The code that runs inside a trial is :mod:`suite.trials`. Resources
per trial come from :class:`Cluster` (fractions allowed); Ray is local by default, or a running
cluster (then ``--out`` should be on storage every node sees). A trial that still raises after its
retries is recorded as failed and the sweep goes on.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from suite.plan import Plan
from suite.progress import RunView
from suite.rundir import RunDir
from suite.rungs import job_scheduler
from suite.schedule import plan_search
from suite.tracking import logger_callbacks
from suite.trials import run_trial
from suite.writers import Recorder, callback


@dataclass(frozen=True)
class Cluster:
    """Where and with how much each trial runs."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 1
    verbose: int = 0             # Ray Tune's own status tables (2: every box, as --verbose asks)
    storage: str | None = None   # Ray Tune's storage_path (a shared folder or a pyarrow URI); default <out>/ray

    def resources(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}

    def fits(self, node: dict[str, float]) -> int:
        """How many trials one node of these resources (Ray's ``{"CPU": n, "GPU": n}``) holds at once."""
        counts = [node.get("CPU", 0) // self.cpus_per_trial]
        if self.gpus_per_trial:
            counts.append(node.get("GPU", 0) // self.gpus_per_trial)
        return int(min(counts))

    def slots(self) -> int:
        """How many trials the connected cluster's nodes hold at once (1 before Ray is started)."""
        import ray

        from suite.cluster import node_resources

        if not ray.is_initialized():
            return 1
        return max(1, sum(self.fits(node) for node in node_resources()))


class Interrupted(RuntimeError):
    """The run stopped before all its trials ended (Ctrl+C); Ray Tune saved its state for ``--resume``."""


def _fit(tuner):
    """``tuner.fit()``, raising :class:`Interrupted` when Tune stopped early on a SIGINT.

    Tune catches the signal itself, stops the running trials (marking them TERMINATED), saves the
    experiment and returns the partial grid as if it had finished. Its handler, once triggered, puts
    back the handler it found, so a sentinel installed before ``fit`` tells whether that happened."""
    watch = threading.current_thread() is threading.main_thread() and not int(
        os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    if not watch:
        return tuner.fit()

    def sentinel(signum, frame):  # a second Ctrl+C, after Tune handed the signal back
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, sentinel)
    try:
        grid = tuner.fit()
        tune_was_interrupted = signal.getsignal(signal.SIGINT) is sentinel
    finally:
        signal.signal(signal.SIGINT, previous)
    if tune_was_interrupted:
        raise Interrupted("Ray Tune stopped the run on Ctrl+C and saved its state")
    return grid


# A trial's process runs the next trial (no new process to start and import torch into): where a trial
# can reset its process's peak memory first (suite.trials.fresh_start), so each record's peak is its own.
REUSE_PROCESSES = sys.platform.startswith("linux")


def _trial_name(trial) -> str:
    return trial.config["name"]


def _trial_dirname(trial) -> str:
    """Unique even when a trial lost with a killed driver is started again under its name."""
    return f"{trial.config['name']}-{trial.trial_id}"


class Runner:
    """Runs a plan into ``out`` as one Ray Tune experiment (see the module docstring)."""

    def __init__(self, plan: Plan, out: Path, cluster: Cluster, resume: bool = False, log=print):
        self.plan, self.out, self.cluster, self.resume, self.log = plan, Path(out).resolve(), cluster, resume, log
        self.run_dir = RunDir(self.out)
        self.recorder = Recorder(plan, self.out, cluster.resources(), log)

    @property
    def experiment(self) -> str:
        """The experiment's name: the same for every session of this plan, so ``--resume`` finds it."""
        digest = hashlib.sha256(",".join(job.run_id for job in self.plan.jobs()).encode()).hexdigest()[:8]
        return f"run-{digest}"

    def tuner(self):
        """The run's one ``Tuner``: restored when resuming an experiment that saved its state, else new.
        Every callback of the run is attached here."""
        from ray import tune

        storage = self.cluster.storage or str(self.run_dir.ray)
        path = f"{storage.rstrip('/')}/{self.experiment}"
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, out=str(self.out), cpus=self.cluster.cpus_per_trial),
            self.cluster.resources())
        if self.resume and tune.Tuner.can_restore(path):
            self.log(f"resuming experiment {self.experiment}")
            # an errored trial stays so: its job's failed record is what --resume tries again, as the searcher decides
            return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
        run_config = tune.RunConfig(
            name=self.experiment, storage_path=storage, verbose=self.cluster.verbose,
            # --log's trackers after the writer: a record exists when they log it
            callbacks=[callback(self.recorder), RunView(self.recorder.progress),
                       *logger_callbacks(self.plan.log, self.out)],
            failure_config=tune.FailureConfig(max_failures=self.cluster.max_failures),
            # The latest two (suite.checkpoints): the experiment state saved last may still name the one
            # before the latest (a run that ended on an error, or was killed, between the two saves).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        )
        search = plan_search(self.recorder)
        tune_config = tune.TuneConfig(search_alg=search, scheduler=job_scheduler(search), num_samples=-1,
                                      trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname,
                                      reuse_actors=REUSE_PROCESSES)
        return tune.Tuner(trainable, run_config=run_config, tune_config=tune_config)

    def run(self) -> None:
        if self.resume:
            self.run_dir.clean_leftovers()
        jobs, todo = self.plan.jobs(), self.recorder.unfinished()
        self.log(f"{len(jobs)} job(s): {len(jobs) - len(todo)} already recorded, {len(todo)} to run")
        if todo:
            with _pending_trials(self.cluster.slots()):
                _fit(self.tuner())


@contextlib.contextmanager
def _pending_trials(n: int):
    """Let Ray Tune start up to ``n`` trials at once (``TUNE_MAX_PENDING_TRIALS_PG``; for a searcher it
    would start one, wait until its actor runs, then ask for the next, filling the slots one by one)."""
    name = "TUNE_MAX_PENDING_TRIALS_PG"
    before = os.environ.get(name)
    if before is None:  # a value the user set wins
        os.environ[name] = str(n)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
