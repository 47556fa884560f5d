"""Ray Tune stages of a run: search (one-shot trials, black-box searchers), then retrain.

* **Search stage.** One trial per one-shot method × task × seed × budget (a ``Tuner`` over a grid of
  jobs). Each black-box job runs its own ``Tuner`` driven by the method's ``Searcher`` (wrapped in a
  ``ConcurrencyLimiter``), one trial per candidate, proxy-trained by the harness at low fidelity. Manual
  baselines need no search. A search ends in ``<out>/architectures/<run_id>.json``.
* **Retrain stage.** One trial per architecture × seed: the harness trains it on train, selects the
  best validation checkpoint and scores it on test. A driver-side callback writes each record as soon
  as its trial ends (atomically), so an interrupted run loses no finished record.

Resources per trial come from ``cpus_per_trial`` / ``gpus_per_trial`` (fractions allowed); Ray is
local by default, or a running cluster at ``address`` (then ``--out`` should be on storage every node
sees). ``FailureConfig`` retries a crashed trial; a trial that still raises is recorded as failed and
the sweep goes on. ``resume=True`` restores each stage's experiment with ``Tuner.restore``: finished
trials are not redone, unfinished ones continue, and jobs that already have a record are skipped.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from methods.base import PARAMS, RATIO, SCORE
from suite.plan import Job, RunPlan
from suite.records import environment, load_records, now, records_dir, write_json_atomic, write_record

ARCH_DIR = "architectures"
SEARCH_DIR = "search"
TRACE_DIR = "traces"
RAY_DIR = "ray"


@dataclass(frozen=True)
class Cluster:
    """Where and with how much each trial runs."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 1
    verbose: int = 1

    def resources(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}


# ---- what a trial builds ----------------------------------------------------------------------------
def _experiment(plan: RunPlan, job: Job, overrides: dict[str, Any] | None = None):
    from suite.harness import Experiment, HarnessConfig
    from suite.tasks import get_task, load_splits

    task = get_task(job.task)
    splits = load_splits(task, job.seed, plan.data_dir)
    return Experiment(task, splits, plan.backbone, job.seed, HarnessConfig(**{**plan.harness, **(overrides or {})}))


def _space(plan: RunPlan, sites):
    from spaces import build_space

    return build_space(plan.space, sites, plan.sizes, backbone_name=plan.backbone)


def _method(plan: RunPlan, name: str):
    from methods import get_method

    return get_method(name, plan.method_options.get(name))


def _threads(cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(cpus)))


def search_trial(config: dict[str, Any], plan: dict[str, Any], out: str, cpus: float,
                 items: dict[str, dict]) -> None:
    """A one-shot search: the method's ``search`` on the search splits; reports the architecture."""
    import torch
    from ray import tune

    from suite.harness import peak_memory_mb

    _threads(cpus)
    run_plan, job = RunPlan.from_dict(plan), Job(**items[config["run_id"]]["job"])
    exp = _experiment(run_plan, job)
    method = _method(run_plan, job.method)
    trace_dir = Path(out) / TRACE_DIR / job.run_id
    trace_dir.mkdir(parents=True, exist_ok=True)
    ctx = exp.search_context(_space(run_plan, exp.sites), job.budget_params, report=tune.report, out_dir=trace_dir)
    if exp.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(exp.device)
    start = time.perf_counter()
    arch = method.search(ctx)
    seconds = time.perf_counter() - start
    # the same measure as the retrain's: the efficiency table compares the two
    info = {**(getattr(method, "last_search_info", {}) or {}), "peak_memory_mb": peak_memory_mb(exp.device)}
    tune.report({"done": 1, "search_s": seconds, "architecture": arch.to_json(indent=None),
                 "search_info": json.dumps(info, default=str)})


def retrain_trial(config: dict[str, Any], plan: dict[str, Any], out: str, cpus: float,
                  items: dict[str, dict]) -> None:
    """Retrain one architecture on train; best validation checkpoint scored on test."""
    from ray import tune

    from spaces.architecture import Architecture

    _threads(cpus)
    item = items[config["run_id"]]
    run_plan, job = RunPlan.from_dict(plan), Job(**item["job"])
    arch = Architecture.from_dict(item["architecture"])
    result = _experiment(run_plan, job).retrain(arch, report=tune.report)
    tune.report({"done": 1, "retrain": json.dumps(result.to_dict())})


def proxy_trial(config: dict[str, Any], plan: dict[str, Any], job: dict[str, Any], cpus: float) -> None:
    """A black-box candidate: proxy-train at the method's fidelity; report score, ratio, params."""
    from ray import tune

    _threads(cpus)
    run_plan, the_job = RunPlan.from_dict(plan), Job(**job)
    method = _method(run_plan, the_job.method)
    exp = _experiment(run_plan, the_job, method.fidelity())
    arch = method.candidate(_space(run_plan, exp.sites), config)
    if not arch.placements:  # nothing to train: a valid point of the space that scores nothing
        tune.report({SCORE: float("nan"), RATIO: 0.0, PARAMS: 0})
        return
    result = exp.retrain(arch, test=False)
    tune.report({SCORE: result.validation[exp.task.selection_metric], RATIO: result.ratio,
                 PARAMS: result.peft_params, "peak_memory_mb": result.peak_memory_mb})


# ---- driver side ----------------------------------------------------------------------------------
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


class _SearchWriter:
    """Writes ``architectures/<run_id>.json`` (or a failed record) as each search trial ends."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def written(self, run_ids: list[str]) -> set[str]:
        failed = self.runner.failed()
        return {r for r in run_ids if r in failed or self.runner.has_architecture(self.runner.job_of(r))}

    def complete(self, trial) -> None:
        job = self.runner.job_of(trial.config["run_id"])
        result = trial.last_result or {}
        if "architecture" not in result:
            return self.error(trial)
        self.runner.save_architecture(job, json.loads(result["architecture"]), result["search_s"],
                                      json.loads(result.get("search_info", "{}")))

    def error(self, trial) -> None:
        self.runner.write_failed(self.runner.job_of(trial.config["run_id"]), f"search failed: {_error_text(trial)}")


class _RetrainWriter:
    """Writes each record as its retrain trial ends."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def written(self, run_ids: list[str]) -> set[str]:
        return set(run_ids) & self.runner.done()

    def complete(self, trial) -> None:
        job = self.runner.job_of(trial.config["run_id"])
        result = trial.last_result or {}
        if "retrain" not in result:
            return self.error(trial)
        self.runner.write_ok(job, json.loads(result["retrain"]))

    def error(self, trial) -> None:
        self.runner.write_failed(self.runner.job_of(trial.config["run_id"]), f"retrain failed: {_error_text(trial)}")


def _callback(writer):
    from ray import tune

    class WriterCallback(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            writer.complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            writer.error(trial)

    return WriterCallback()


class Runner:
    """Runs a plan's stages into ``out`` (see the module docstring)."""

    def __init__(self, plan: RunPlan, out: Path, cluster: Cluster, resume: bool = False, log=print):
        self.plan, self.out, self.cluster, self.resume, self.log = plan, Path(out).resolve(), cluster, resume, log
        self.env = environment(device=None)
        self._sites = None
        self._jobs: dict[str, Job] = {}

    # ---- files -------------------------------------------------------------------------------------
    def arch_path(self, job: Job) -> Path:
        return self.out / ARCH_DIR / f"{job.run_id}.json"

    def save_architecture(self, job: Job, arch: dict, search_s: float, info: dict) -> None:
        """The found architecture (a plain ``Architecture`` file) and, beside it, the search's facts."""
        write_json_atomic(self.out / SEARCH_DIR / f"{job.run_id}.json", {"search_s": search_s, "search": info})
        write_json_atomic(self.arch_path(job), arch)

    def has_architecture(self, job: Job) -> bool:
        return self.arch_path(job).is_file()

    def load_architecture(self, job: Job) -> dict | None:
        """``{"architecture", "search_s", "search"}`` of a finished search, or None."""
        path = self.arch_path(job)
        if not self.has_architecture(job):
            return None
        facts = self.out / SEARCH_DIR / f"{job.run_id}.json"
        return {"architecture": json.loads(path.read_text()),
                **(json.loads(facts.read_text()) if facts.is_file() else {"search_s": None, "search": {}})}

    def done(self) -> set[str]:
        """Run ids that already have an ``ok`` record."""
        return self._records("ok")

    def failed(self) -> set[str]:
        return self._records("failed")

    def _records(self, status: str) -> set[str]:
        if not records_dir(self.out).is_dir():
            return set()
        return {r["run_id"] for r in load_records(self.out, status=status)}

    def _record(self, job: Job, status: str, error: str | None, retrain: dict | None) -> dict[str, Any]:
        from spaces.architecture import Architecture
        from suite.tasks import get_task

        saved = self.load_architecture(job) or {}
        arch = saved.get("architecture")
        task = get_task(job.task)
        params: dict[str, Any] = {"peft": None, "head": None, "ratio": None, "permyriad": None}
        metrics = {"selection": task.selection_metric, "validation": {}, "test": {}}
        times = {"search_s": saved.get("search_s"), "retrain_s": None, "eval_s": None}
        retrain_info: dict[str, Any] = {}
        if retrain:
            params = {"peft": retrain["peft_params"], "head": retrain["head_params"], "ratio": retrain["ratio"],
                      "permyriad": retrain["ratio"] * 1e4}
            metrics.update(validation=retrain["validation"], test=retrain["test"])
            times.update(retrain_s=retrain["train_time_s"], eval_s=retrain["eval_time_s"])
            retrain_info = {k: retrain[k] for k in ("steps", "best_step", "peak_memory_mb", "history")}
        return {
            "schema": 1, "run_id": job.run_id, "status": status, "error": error,
            "method": job.method, "method_kind": job.kind,
            "method_config": _method(self.plan, job.method).config_dict(),
            "space": job.space, "task": job.task, "seed": job.seed,
            "backbone": self.plan.backbone, "backbone_params": self.plan.backbone_params,
            "budget": {"fraction": job.budget_fraction, "params": job.budget_params},
            "architecture": arch, "architecture_digest": Architecture.from_dict(arch).digest() if arch else None,
            "params": params, "metrics": metrics, "time": times,
            "search": saved.get("search", {}), "retrain": retrain_info, "harness": self.plan.harness,
            "environment": {**self.env, "hardware": {**self.env["hardware"], "cpus_per_trial": self.cluster.cpus_per_trial,
                                                     "gpus_per_trial": self.cluster.gpus_per_trial}},
            "created_at": now(),
        }

    def write_ok(self, job: Job, retrain: dict) -> None:
        path = write_record(self.out, self._record(job, "ok", None, retrain))
        self.log(f"record {path.name}: test {retrain['test']}")

    def write_failed(self, job: Job, error: str) -> None:
        write_record(self.out, self._record(job, "failed", error, None))
        self.log(f"record {job.run_id}: FAILED ({error.splitlines()[0][:200]})")

    # ---- Ray ---------------------------------------------------------------------------------------
    def _tuner(self, name: str, trainable, param_space: dict | None, writer=None, **tune_config):
        from ray import tune

        storage = str(self.out / RAY_DIR)
        path = Path(storage) / name
        callbacks = [_callback(writer)] if writer else []
        trainable = tune.with_resources(trainable, self.cluster.resources())
        if self.resume and tune.Tuner.can_restore(str(path)):
            self.log(f"resuming stage {name}")
            return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True,
                                      param_space=param_space)
        run_config = tune.RunConfig(
            name=name, storage_path=storage, callbacks=callbacks, verbose=self.cluster.verbose,
            failure_config=tune.FailureConfig(max_failures=self.cluster.max_failures),
        )
        return tune.Tuner(trainable, param_space=param_space, run_config=run_config,
                          tune_config=tune.TuneConfig(**tune_config))

    def _stage_name(self, stage: str, run_ids: list[str]) -> str:
        digest = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:8]
        return f"{stage}-{digest}"

    def _grid_stage(self, stage: str, trainable, configs: list[dict], writer) -> None:
        """One trial per config (a grid over run ids, so the progress table stays readable); records
        and architectures are written as trials end, and once more from the result grid for anything
        a restored experiment finished without our callback."""
        from ray import tune

        jobs = [Job(**c["job"]) for c in configs]
        items = {job.run_id: c for job, c in zip(jobs, configs)}
        self._jobs.update({job.run_id: job for job in jobs})
        fn = tune.with_parameters(trainable, plan=self.plan.to_dict(), out=str(self.out),
                                  cpus=self.cluster.cpus_per_trial, items=items)
        tuner = self._tuner(self._stage_name(stage, list(items)), fn, {"run_id": tune.grid_search(list(items))},
                            writer, trial_name_creator=_trial_name, trial_dirname_creator=_trial_name)
        grid = _fit(tuner)
        written = writer.written([result.config["run_id"] for result in grid])  # read the records once
        for result in grid:
            if result.config["run_id"] not in written:
                trial = _ResultTrial(result)
                (writer.error if result.error else writer.complete)(trial)

    def job_of(self, run_id: str) -> Job:
        return self._jobs[run_id]

    def search_one_shot(self, jobs: list[Job]) -> None:
        if jobs:
            self.log(f"search stage: {len(jobs)} one-shot search trial(s)")
            self._grid_stage("search", search_trial, [{"job": asdict(j)} for j in jobs], _SearchWriter(self))

    def search_black_box(self, job: Job) -> None:
        from ray import tune
        from ray.tune.search import ConcurrencyLimiter

        method = _method(self.plan, job.method)
        space = _space(self.plan, self.sites)
        n = method.num_candidates()
        start = time.perf_counter()
        searcher = method.make_searcher(space, job.budget_params, job.seed, metric=SCORE, mode="max")
        if n == 1:  # nothing to choose between: take the suggestion without proxy training
            arch = method.candidate(space, searcher.suggest("only"))
            self.save_architecture(job, arch.to_dict(), time.perf_counter() - start, {"candidates": 1})
            return
        self.log(f"search stage: {job.method} proposes {n} candidates for {job.run_id}")
        searcher = ConcurrencyLimiter(searcher, max_concurrent=method.max_concurrent())
        fn = tune.with_parameters(proxy_trial, plan=self.plan.to_dict(), job=asdict(job),
                                  cpus=self.cluster.cpus_per_trial)
        tuner = self._tuner(f"blackbox-{job.run_id}", fn, None, None, search_alg=searcher, num_samples=n,
                            metric=SCORE, mode="max")
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
            arch, info = method.select(space, job.budget_params, results)
        except Exception as e:  # noqa: BLE001 - a search that finds nothing is a failed record, not a crash
            self.write_failed(job, f"search failed: {type(e).__name__}: {e}")
            return
        peaks = [r["peak_memory_mb"] for r in results if r["peak_memory_mb"] is not None]
        info = {**info, "trial_seconds_total": sum(r["seconds"] or 0 for r in results),
                "peak_memory_mb": max(peaks) if peaks else None}  # the largest candidate trial's
        self.save_architecture(job, arch.to_dict(), time.perf_counter() - start, info)

    def manual(self, job: Job) -> None:
        arch = _method(self.plan, job.method).architecture(self.sites, self.plan.backbone)
        self.save_architecture(job, arch.to_dict(), 0.0, {})

    def retrain(self, jobs: list[Job]) -> None:
        configs = []
        for job in jobs:
            saved = self.load_architecture(job)
            if saved is not None:
                configs.append({"job": asdict(job), "architecture": saved["architecture"]})
        if configs:
            self.log(f"retrain stage: {len(configs)} trial(s)")
            self._grid_stage("retrain", retrain_trial, configs, _RetrainWriter(self))

    @property
    def sites(self):
        if self._sites is None:
            from suite.backbones import backbone_sites

            self._sites = backbone_sites(self.plan.backbone)
        return self._sites

    def run(self) -> None:
        jobs = self.plan.jobs()
        done = self.done()
        todo = [j for j in jobs if j.run_id not in done]
        self.log(f"{len(jobs)} job(s): {len(done & {j.run_id for j in jobs})} already recorded, {len(todo)} to run")
        need_search = [j for j in todo if not self.has_architecture(j)]
        for job in need_search:
            if job.kind == "manual":
                self.manual(job)
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


def _trial_name(trial) -> str:
    return trial.config["run_id"]


class _ResultTrial:
    """A ``ray.tune.Result`` seen through the attributes the writers read from a trial."""

    def __init__(self, result):
        self.config, self.last_result, self._error = result.config, result.metrics, result.error

    error_file = None

    def get_error(self):
        return self._error
