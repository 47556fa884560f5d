"""The driver of a run: Ray Tune stages (search, then retrain), the callbacks that write records,
Ctrl+C and resume.

* **Search stage.** One trial per one-shot method × task × seed × budget (a ``Tuner`` over a grid of
  trial specs). Each black-box job runs its own ``Tuner`` driven by the method's ``Searcher``
  (wrapped in a ``ConcurrencyLimiter``), one trial per candidate, proxy-trained by the harness at
  low fidelity. Manual baselines need no search. A search ends in ``<out>/architectures/<run_id>.json``
  (the architecture) and ``<out>/search/<run_id>.json`` (its seconds and what it reported); the
  driver keeps both in memory for the retrain stage and the record.
* **Retrain stage.** One trial per architecture × seed: the harness trains it on train, selects the
  best validation checkpoint and scores it on test. A callback writes each record as soon as its
  trial ends (atomically), so an interrupted run loses no finished record.

Resources per trial come from :class:`Cluster` (fractions allowed); Ray is local by default, or a
running cluster (then ``--out`` should be on storage every node sees). ``FailureConfig`` retries a
crashed trial; a trial that still raises is recorded as failed and the sweep goes on. ``resume=True``
restores each stage's experiment with ``Tuner.restore``: finished trials are not redone, unfinished
ones continue, and jobs that already have a record are skipped. The code that runs inside a trial is
:mod:`suite.trials`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from methods.base import PARAMS, RATIO, SCORE, SearchProblem
from suite.plan import Job, Plan
from suite.records import (
    build_record,
    environment,
    load_records,
    records_dir,
    write_json_atomic,
    write_record,
)
from suite.trials import proxy_trial, retrain_trial, search_trial

ARCH_DIR = "architectures"
SEARCH_DIR = "search"
RAY_DIR = "ray"


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


@dataclass
class Found:
    """A finished search: the architecture (as a dict), its seconds and what it reported."""

    architecture: dict[str, Any]
    search_s: float | None
    info: dict[str, Any] = field(default_factory=dict)


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


class _Writer:
    """Writes what a stage's trial delivered as it ends (or a failed record); ``written`` tells which
    trials of a result grid were already handled by the callback."""

    stage: str
    result_key: str  # what an ok trial's last result holds

    def __init__(self, runner: Runner):
        self.runner = runner

    def _job(self, trial) -> Job:
        return self.runner.job_of(trial.config["trial"]["run_id"])

    def complete(self, trial) -> None:
        result = trial.last_result or {}
        if self.result_key not in result:
            return self.error(trial)
        self.save(self._job(trial), result, trial)

    def error(self, trial) -> None:
        self.runner.write_failed(self._job(trial), f"{self.stage} failed: {_error_text(trial)}")

    def save(self, job: Job, result: dict, trial) -> None:
        raise NotImplementedError

    def written(self, run_ids: list[str]) -> set[str]:
        raise NotImplementedError


class _SearchWriter(_Writer):
    """Keeps (and saves) each search's architecture."""

    stage, result_key = "search", "architecture"

    def written(self, run_ids: list[str]) -> set[str]:
        failed = self.runner.failed()
        return {r for r in run_ids if r in failed or r in self.runner.found}

    def save(self, job: Job, result: dict, trial) -> None:
        self.runner.save_found(job, Found(json.loads(result["architecture"]), result["search_s"],
                                          json.loads(result.get("search_info", "{}"))))


class _RetrainWriter(_Writer):
    """Writes each record."""

    stage, result_key = "retrain", "retrain"

    def written(self, run_ids: list[str]) -> set[str]:
        return set(run_ids) & (self.runner.done() | self.runner.failed())

    def save(self, job: Job, result: dict, trial) -> None:
        retrain = {**json.loads(result["retrain"]), "attempts": 1 + getattr(trial, "num_failures", 0)}
        self.runner.write_ok(job, retrain, self.runner.file_artifacts(job, trial.checkpoint))


def _callback(writer):
    from ray import tune

    class WriterCallback(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            writer.complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            writer.error(trial)

    return WriterCallback()


def _trial_name(trial) -> str:
    return trial.config["trial"]["run_id"]


class _ResultTrial:
    """A ``ray.tune.Result`` seen through the attributes the writers read from a trial."""

    def __init__(self, result):
        # a trial whose actor never started has no config: its folder is named after its run id
        self.config = result.config or {"trial": {"run_id": Path(result.path).name}}
        self.last_result, self._error, self.checkpoint = result.metrics, result.error, result.checkpoint

    error_file = None

    def get_error(self):
        return self._error


class Runner:
    """Runs a plan's stages into ``out`` (see the module docstring)."""

    def __init__(self, plan: Plan, out: Path, cluster: Cluster, resume: bool = False, log=print):
        self.plan, self.out, self.cluster, self.resume, self.log = plan, Path(out).resolve(), cluster, resume, log
        self.env = environment()
        self._sites = None
        self._jobs = {job.run_id: job for job in plan.jobs()}
        self.found: dict[str, Found] = {}

    def job_of(self, run_id: str) -> Job:
        return self._jobs[run_id]

    # ---- searches found ----------------------------------------------------------------------------
    def save_found(self, job: Job, found: Found) -> None:
        """Keep a finished search, and save it (the architecture file is a plain ``Architecture``)."""
        self.found[job.run_id] = found
        write_json_atomic(self.out / SEARCH_DIR / f"{job.run_id}.json", {"search_s": found.search_s,
                                                                        "search": found.info})
        write_json_atomic(self.out / ARCH_DIR / f"{job.run_id}.json", found.architecture)

    def _load_found(self, jobs: list[Job]) -> None:
        """What earlier runs of this folder found (``--resume``), read once."""
        for job in jobs:
            path = self.out / ARCH_DIR / f"{job.run_id}.json"
            if job.run_id in self.found or not path.is_file():
                continue
            facts = self.out / SEARCH_DIR / f"{job.run_id}.json"
            saved = json.loads(facts.read_text()) if facts.is_file() else {"search_s": None, "search": {}}
            self.found[job.run_id] = Found(json.loads(path.read_text()), saved["search_s"], saved["search"])

    # ---- records -----------------------------------------------------------------------------------
    def done(self) -> set[str]:
        """Run ids that already have an ``ok`` record."""
        return self._records("ok")

    def failed(self) -> set[str]:
        return self._records("failed")

    def _records(self, status: str) -> set[str]:
        if not records_dir(self.out).is_dir():
            return set()
        return {r["run_id"] for r in load_records(self.out, status=status)}

    def file_artifacts(self, job: Job, checkpoint) -> dict[str, dict]:
        """Copy a retrain's weights and test predictions from its Tune checkpoint (wherever the run's
        storage is) to ``weights/`` and ``predictions/`` under ``out``; their paths (relative to
        ``out``) and sha256 for the record."""
        import hashlib
        import shutil

        from suite.trials import PREDICTIONS_FILE, WEIGHTS_FILE

        files: dict[str, dict] = {}
        if checkpoint is None:
            return files
        with checkpoint.as_directory() as folder:
            for key, name, suffix in (("weights", WEIGHTS_FILE, ".safetensors"),
                                      ("predictions", PREDICTIONS_FILE, ".jsonl.gz")):
                source = Path(folder) / name
                if not source.is_file():
                    continue
                target = Path(key) / f"{job.run_id}{suffix}"
                (self.out / key).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, self.out / target)
                digest = hashlib.sha256((self.out / target).read_bytes()).hexdigest()
                files[key] = {"path": str(target), "sha256": digest, "bytes": (self.out / target).stat().st_size}
        return files

    def _record(self, job: Job, status: str, error: str | None, retrain: dict | None,
                files: dict | None = None) -> dict[str, Any]:
        found = self.found.get(job.run_id)
        hardware = {**self.env["hardware"], "cpus_per_trial": self.cluster.cpus_per_trial,
                    "gpus_per_trial": self.cluster.gpus_per_trial}
        return build_record(
            job, status, error=error, retrain=retrain, backbone=self.plan.backbone,
            backbone_params=self.plan.backbone_params, harness=self.plan.harness,
            method_config=method.config_dict() if (method := self.plan.method(job.method)) else {},
            recipe=self.plan.retrain_recipe, files=files,
            environment={**self.env, "hardware": hardware},
            architecture=found.architecture if found else None, search_s=found.search_s if found else None,
            search=found.info if found else {},
        )

    def write_ok(self, job: Job, retrain: dict, files: dict | None = None) -> None:
        path = write_record(self.out, self._record(job, "ok", None, retrain, files))
        self.log(f"record {path.name}: test {retrain['test']}")

    def write_failed(self, job: Job, error: str) -> None:
        write_record(self.out, self._record(job, "failed", error, None))
        self.log(f"record {job.run_id}: FAILED ({error.splitlines()[0][:200]})")

    # ---- Ray ---------------------------------------------------------------------------------------
    def _tuner(self, name: str, trainable, param_space: dict | None, writer=None, view=None, **tune_config):
        from ray import tune

        storage = self.cluster.storage or str(self.out / RAY_DIR)
        path = f"{storage.rstrip('/')}/{name}"
        callbacks = [c for c in ([_callback(writer)] if writer else []) + [view] if c is not None]
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
        trials = [(_ResultTrial(result), result.error) for result in _fit(tuner)]
        written = writer.written([trial.config["trial"]["run_id"] for trial, _ in trials])  # read the records once
        for trial, error in trials:
            if trial.config["trial"]["run_id"] not in written:
                (writer.error if error else writer.complete)(trial)

    def search_one_shot(self, jobs: list[Job]) -> None:
        if jobs:
            self.log(f"search stage: {len(jobs)} one-shot search trial(s)")
            self._grid_stage("search", search_trial, [self.plan.trial_spec(j) for j in jobs], _SearchWriter(self),
                             out=str(self.out))

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
            self.save_found(job, Found(arch.to_dict(), time.perf_counter() - start, {"candidates": 1}))
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
            self.write_failed(job, f"search failed: {type(e).__name__}: {e}")
            return
        peaks = [r["peak_memory_mb"] for r in results if r["peak_memory_mb"] is not None]
        info = {**selected.info, "op_options": spec["op_options"],
                "trial_seconds_total": sum(r["seconds"] or 0 for r in results),
                "peak_memory_mb": max(peaks) if peaks else None}  # the largest candidate trial's
        self.save_found(job, Found(selected.architecture.to_dict(), time.perf_counter() - start, info))

    def manual(self, job: Job) -> None:
        arch = self.plan.method(job.method).architecture(self.sites, self.plan.backbone)
        self.save_found(job, Found(arch.to_dict(), 0.0, {}))

    def retrain(self, jobs: list[Job]) -> None:
        specs = [self.plan.trial_spec(job, self.found[job.run_id].architecture) for job in jobs
                 if job.run_id in self.found]
        if specs:
            self.log(f"retrain stage: {len(specs)} trial(s)")
            self._grid_stage("retrain", retrain_trial, specs, _RetrainWriter(self))

    @property
    def sites(self):
        if self._sites is None:
            from suite.backbones import backbone_sites

            self._sites = backbone_sites(self.plan.backbone)
        return self._sites

    def clean_leftovers(self) -> None:
        """Temporary files a killed writer left (``.<name>.<random>.tmp``): the rename never happened."""
        for folder in ("records", ARCH_DIR, SEARCH_DIR, "weights", "predictions"):
            for tmp in (self.out / folder).glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def run(self) -> None:
        if self.resume:
            self.clean_leftovers()
        jobs = self.plan.jobs()
        done = self.done()
        todo = [j for j in jobs if j.run_id not in done]
        self.log(f"{len(jobs)} job(s): {len(done & {j.run_id for j in jobs})} already recorded, {len(todo)} to run")
        self._load_found(todo)
        need_search = [j for j in todo if j.run_id not in self.found]
        for job in need_search:
            if job.kind == "manual":
                self.manual(job)
            elif job.kind == "transfer":  # a given architecture: nothing to search
                self.save_found(job, Found(self.plan.transfer["architecture"], 0.0,
                                           {"transfer": self.plan.transfer["source"]}))
        self.search_one_shot([j for j in need_search if j.kind == "one-shot"])
        for job in need_search:
            if job.kind == "black-box":
                try:
                    self.search_black_box(job)
                except Interrupted:
                    raise
                except Exception as e:  # noqa: BLE001 - one failed job must not stop the sweep
                    self.write_failed(job, f"search failed: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        done = self.done()
        self.retrain([j for j in todo if j.run_id not in done])  # those with an architecture
