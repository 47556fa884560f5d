"""The driver of a run: its Ray Tune stages (search, then retrain), Ctrl+C and resume.

* **Search stage.** One trial per one-shot method × task × seed × budget (a ``Tuner`` over a grid of
  trial specs). Each black-box job runs its own ``Tuner`` driven by the method's ``Searcher``
  (wrapped in a ``ConcurrencyLimiter``), one trial per candidate, proxy-trained by the harness at
  low fidelity. Manual baselines and transferred architectures need no search. A search ends in a
  :class:`~suite.outcomes.SearchOutcome`, saved under ``architectures/`` and ``search/`` and kept in
  memory for the retrain stage and the record.
* **Retrain stage.** One trial per architecture × seed: the harness trains it on train, selects the
  best validation checkpoint and scores it on test. A callback writes each record as soon as its
  trial ends (atomically), so an interrupted run loses no finished record.

What a trial ends in is written by :mod:`suite.writers` (Tune callbacks, and a pass over the result
grid for what a restored experiment finished without them) into the run folder, whose layout
:mod:`suite.rundir` owns. The code that runs inside a trial is :mod:`suite.trials`.

Resources per trial come from :class:`Cluster` (fractions allowed); Ray is local by default, or a
running cluster (then ``--out`` should be on storage every node sees). ``FailureConfig`` retries a
crashed trial; a trial that still raises is recorded as failed and the sweep goes on. ``resume=True``
restores each stage's experiment with ``Tuner.restore``: finished trials are not redone, unfinished
ones continue, and jobs that already have a record are skipped.
"""
from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from methods.base import PARAMS, RATIO, SCORE, SearchProblem
from suite.outcomes import SearchOutcome
from suite.plan import Job, Plan
from suite.rundir import RunDir
from suite.tracking import logger_callbacks
from suite.trials import proxy_trial, retrain_trial, search_trial
from suite.writers import Recorder, ResultTrial, RetrainWriter, SearchWriter, callback


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


class Interrupted(RuntimeError):
    """A stage stopped before all its trials ended (Ctrl+C): nothing after it may run on partial results."""


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
        raise Interrupted("Ray Tune stopped a stage on Ctrl+C and saved its state")
    return grid


def _trial_name(trial) -> str:
    return trial.config["trial"]["run_id"]


class Runner:
    """Runs a plan's stages into ``out`` (see the module docstring)."""

    def __init__(self, plan: Plan, out: Path, cluster: Cluster, resume: bool = False, log=print):
        self.plan, self.out, self.cluster, self.resume, self.log = plan, Path(out).resolve(), cluster, resume, log
        self.run_dir = RunDir(self.out)
        self.recorder = Recorder(plan, self.out, cluster.resources(), log)
        self._sites = None

    # ---- Ray ---------------------------------------------------------------------------------------
    def _tuner(self, name: str, trainable, param_space: dict | None, writer=None, view=None, **tune_config):
        from ray import tune

        storage = self.cluster.storage or str(self.run_dir.ray)
        path = f"{storage.rstrip('/')}/{name}"
        callbacks = [c for c in ([callback(writer)] if writer else []) + [view] if c is not None]
        callbacks += logger_callbacks(self.plan.log, self.out)  # --log: after the writer, which writes the records
        trainable = tune.with_resources(trainable, self.cluster.resources())
        if self.resume and tune.Tuner.can_restore(path):
            self.log(f"resuming stage {name}")
            return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                      param_space=param_space)
        run_config = tune.RunConfig(
            name=name, storage_path=storage, callbacks=callbacks, verbose=self.cluster.verbose,
            failure_config=tune.FailureConfig(max_failures=self.cluster.max_failures),
        )
        return tune.Tuner(trainable, param_space=param_space, run_config=run_config,
                          tune_config=tune.TuneConfig(**tune_config))

    @staticmethod
    def _stage_name(stage: str, run_ids: list[str]) -> str:
        digest = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:8]
        return f"{stage}-{digest}"

    def _grid_stage(self, stage: str, trainable, specs: list[dict], writer, **parameters) -> None:
        """One trial per trial spec; records and architectures are kept as trials end, and once more
        from the result grid for anything a restored experiment finished without our callback."""
        from ray import tune

        from suite.progress import StageView

        fn = tune.with_parameters(trainable, cpus=self.cluster.cpus_per_trial, **parameters)
        tuner = self._tuner(self._stage_name(stage, [s["run_id"] for s in specs]), fn,
                            {"trial": tune.grid_search(specs)}, writer, StageView(stage, len(specs)),
                            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name)
        trials = [(ResultTrial(result), result.error) for result in _fit(tuner)]
        written = writer.written([trial.config["trial"]["run_id"] for trial, _ in trials])  # read the records once
        for trial, error in trials:
            if trial.config["trial"]["run_id"] not in written:
                (writer.error if error else writer.complete)(trial)

    def search_one_shot(self, jobs: list[Job]) -> None:
        if jobs:
            self.log(f"search stage: {len(jobs)} one-shot search trial(s)")
            self._grid_stage("search", search_trial, [self.plan.trial_spec(j) for j in jobs],
                             SearchWriter(self.recorder), out=str(self.out))

    def search_black_box(self, job: Job) -> None:
        from ray import tune
        from ray.tune.search import ConcurrencyLimiter

        from spaces import build_space

        method = self.plan.method(job.method)
        problem = SearchProblem(build_space(self.plan.space, self.sites, self.plan.sizes,
                                            backbone_name=self.plan.backbone), job.budget_params, job.seed)
        n = method.num_candidates()
        start = time.perf_counter()
        searcher = method.make_searcher(problem, metric=SCORE, mode="max")
        if n == 1:  # nothing to choose between: take the suggestion without proxy training
            arch = method.candidate(problem.space, searcher.suggest("only"))
            seconds = time.perf_counter() - start
            self.recorder.save_found(job, SearchOutcome(arch.to_dict(), seconds, {"candidates": 1}))
            return
        self.log(f"search stage: {job.method} proposes {n} candidates for {job.run_id}")
        searcher = ConcurrencyLimiter(searcher, max_concurrent=method.max_concurrent())
        from suite.progress import StageView

        spec = self.plan.trial_spec(job)  # its op_options are the retrain recipe's: the proxies train those ops
        fn = tune.with_parameters(proxy_trial, spec=spec, cpus=self.cluster.cpus_per_trial)
        tuner = self._tuner(f"blackbox-{job.run_id}", fn, None, None, StageView(f"search {job.run_id}", n),
                            search_alg=searcher, num_samples=n, metric=SCORE, mode="max")
        grid = _fit(tuner)
        results = []
        for r in grid:
            metrics = r.metrics or {}
            score = metrics.get(SCORE)
            results.append({
                "config": dict(r.config or {}),
                SCORE: float("nan") if r.error or score is None else float(score),
                RATIO: metrics.get(RATIO, math.nan), PARAMS: metrics.get(PARAMS, math.inf),
                "error": None if r.error is None else str(r.error)[:500],
                "seconds": metrics.get("time_total_s"), "peak_memory_mb": metrics.get("peak_memory_mb"),
            })
        try:
            selected = method.select(problem, results)
        except Exception as e:  # noqa: BLE001 - a search that finds nothing is a failed record, not a crash
            self.recorder.write_failed(job, f"search failed: {type(e).__name__}: {e}")
            return
        peaks = [r["peak_memory_mb"] for r in results if r["peak_memory_mb"] is not None]
        info = {**selected.info, "op_options": spec["op_options"],
                "trial_seconds_total": sum(r["seconds"] or 0 for r in results),
                "peak_memory_mb": max(peaks) if peaks else None}  # the largest candidate trial's
        seconds = time.perf_counter() - start
        self.recorder.save_found(job, SearchOutcome(selected.architecture.to_dict(), seconds, info))

    def manual(self, job: Job) -> None:
        arch = self.plan.method(job.method).architecture(self.sites, self.plan.backbone)
        self.recorder.save_found(job, SearchOutcome(arch.to_dict(), 0.0, {}))

    def retrain(self, jobs: list[Job]) -> None:
        found = self.recorder.found
        specs = [self.plan.trial_spec(job, found[job.run_id].architecture) for job in jobs if job.run_id in found]
        if specs:
            self.log(f"retrain stage: {len(specs)} trial(s)")
            self._grid_stage("retrain", retrain_trial, specs, RetrainWriter(self.recorder))

    @property
    def sites(self):
        if self._sites is None:
            from suite.backbones import backbone_sites

            self._sites = backbone_sites(self.plan.backbone)
        return self._sites

    def run(self) -> None:
        if self.resume:
            self.run_dir.clean_leftovers()
        jobs, recorder = self.plan.jobs(), self.recorder
        done = recorder.done()
        todo = [j for j in jobs if j.run_id not in done]
        self.log(f"{len(jobs)} job(s): {len(done & {j.run_id for j in jobs})} already recorded, {len(todo)} to run")
        recorder.load_found(todo)
        need_search = [j for j in todo if j.run_id not in recorder.found]
        for job in need_search:
            if job.kind == "manual":
                self.manual(job)
            elif job.kind == "transfer":  # a given architecture: nothing to search
                recorder.save_found(job, SearchOutcome(self.plan.transfer["architecture"], 0.0,
                                                       {"transfer": self.plan.transfer["source"]}))
        self.search_one_shot([j for j in need_search if j.kind == "one-shot"])
        for job in need_search:
            if job.kind == "black-box":
                try:
                    self.search_black_box(job)
                except Interrupted:
                    raise
                except Exception as e:  # noqa: BLE001 - one failed job must not stop the sweep
                    recorder.write_failed(job, f"search failed: {type(e).__name__}: {e}\n"
                                               f"{traceback.format_exc(limit=3)}")
        done = recorder.done()
        self.retrain([j for j in todo if j.run_id not in done])  # those with an architecture
