"""The code that runs inside a Ray trial: a one-shot search, a retrain, a black-box candidate.

A run is one Ray Tune experiment with one trainable, :func:`run_trial`, which dispatches on the
trial's kind (``config["kind"]``: :data:`SEARCH`, :data:`CANDIDATE` or :data:`RETRAIN`). Each trial
receives its own *trial spec* (``config["trial"]``, from ``Plan.trial_spec``: its job, the plan's
settings it needs and, for a retrain, its architecture; a candidate also gets its searcher's suggestion,
``config["candidate"]``), builds an :class:`~suite.harness.Experiment` from it and reports what the
driver records, typed (:mod:`suite.outcomes`). Nothing here writes a record: the driver does, as each
trial ends (:mod:`suite.writers`); a search's trace goes to its folder of the run (:mod:`suite.rundir`),
a retrain's weights and predictions into its checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from methods.base import PARAMS, RATIO, SCORE
from suite.outcomes import RETRAIN_KEY, SEARCH_KEY, SearchOutcome, packed
from suite.rundir import CHECKPOINT_FILES, PREDICTIONS, TRACES, WEIGHTS, RunDir, entry

SEARCH, CANDIDATE, RETRAIN = "search", "candidate", "retrain"  # the kinds of trial
ORDER = (CANDIDATE, SEARCH, RETRAIN)  # which ready work takes a free slot first (suite.schedule, the dry run)
PLACEMENT = "placement"  # a candidate's placement, reported as a JSON string (Tune flattens dicts)


def placement(started_at: str) -> dict[str, Any]:
    """Where and when this trial ran: its Ray node, the host, the GPUs Ray gave it
    (``CUDA_VISIBLE_DEVICES``), and its work's start and end (UTC, ms: which trials overlapped)."""
    import os
    import socket

    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "started_at": started_at,
            "ended_at": utc_now()}


def utc_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def fresh_start() -> bool:
    """Start this trial as if its process were new: Ray Tune reuses a trial's process for the next
    trial (``reuse_actors``), so free what the last one left (Python garbage, the CUDA cache, the C
    heap's free pages) and reset the process's peak resident set (Linux ``clear_refs``), which the
    harness reads as a trial's peak memory on the CPU. False where the peak cannot be reset."""
    import ctypes
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _setup(spec: dict[str, Any], cpus: float) -> None:
    """A clean process, threads for this trial's CPUs, and the plugin modules that register
    out-of-tree entries."""
    import torch

    from core.registry import import_plugins

    fresh_start()
    torch.set_num_threads(max(1, int(cpus)))
    import_plugins(spec["plugins"])


def _experiment(spec: dict[str, Any], overrides: dict[str, Any] | None = None):
    from suite.harness import Experiment, HarnessConfig
    from suite.tasks import get_task, load_splits

    job = spec["job"]
    task = get_task(job["task"])
    splits = load_splits(task, job["seed"], spec["data_dir"])
    config = HarnessConfig(**{**spec["harness"], **(overrides or {})})
    return Experiment(task, splits, spec["backbone"], job["seed"], config)


def _space(spec: dict[str, Any], sites):
    from spaces import build_space

    return build_space(spec["space"], sites, spec["sizes"], backbone_name=spec["backbone"])


def _method(spec: dict[str, Any]):
    from methods import get_method

    return get_method(spec["job"]["method"], spec["method_options"])


def search_trial(config: dict[str, Any], out: str, cpus: float) -> None:
    """A one-shot search on the search splits; reports the architecture and what the search says."""
    import torch
    from ray import tune

    from suite.harness import peak_memory_mb

    spec = config["trial"]
    started_at = utc_now()
    _setup(spec, cpus)
    exp = _experiment(spec)
    method = _method(spec)
    ctx = exp.search_context(_space(spec, exp.sites), spec["job"]["budget_params"], report=tune.report,
                             out_dir=RunDir(out).trace(spec["run_id"]), op_options=spec["op_options"])  # the retrain's
    if exp.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(exp.device)
    start = time.perf_counter()
    result = method.search(ctx)
    seconds = time.perf_counter() - start
    # the same measure as the retrain's: the efficiency table compares the two
    info = {**result.info, "peak_memory_mb": peak_memory_mb(exp.device), "precision": exp.precision,
            "placement": placement(started_at)}
    if any(key.startswith("trace_") for key in info):
        info["trace_dir"] = str(entry(TRACES, spec["run_id"]))  # relative to --out: no machine path
    outcome = SearchOutcome(result.architecture.to_dict(), seconds, info)
    tune.report({"done": 1, SEARCH_KEY: packed(outcome)})


def write_artifacts(folder: Path, result, spec: dict[str, Any], revision: str | None) -> None:
    """The best checkpoint's trainable weights (safetensors, with the architecture, the backbone and
    the recipe in its metadata) and the test predictions (gzipped JSON lines) into ``folder``."""
    import gzip

    from safetensors.torch import save_file

    if spec.get("save_weights", True) and result.weights:
        metadata = {"architecture": json.dumps(spec["architecture"]), "backbone": spec["backbone"],
                    "backbone_revision": revision or "", "op_options": json.dumps(result.op_options),
                    "pooling": result.pooling or "", "run_id": spec["run_id"]}
        save_file({k: v.contiguous() for k, v in result.weights.items()}, str(folder / CHECKPOINT_FILES[WEIGHTS]), metadata)
    if result.predictions is not None:
        with gzip.open(folder / CHECKPOINT_FILES[PREDICTIONS], "wt") as f:
            for row in result.predictions:
                f.write(json.dumps(row) + "\n")


def retrain_trial(config: dict[str, Any], cpus: float) -> None:
    """Retrain one architecture on train; best validation checkpoint scored on test. The weights and
    the test predictions travel as the trial's Tune checkpoint (persisted to the run's storage, so a
    driver on another machine gets them), which the driver files beside the record."""
    import dataclasses
    import tempfile

    from ray import tune

    from spaces.architecture import Architecture
    from suite.backbones import revision
    from suite.checkpoints import TuneCheckpoints

    spec = config["trial"]
    started_at = utc_now()
    _setup(spec, cpus)
    arch = Architecture.from_dict(spec["architecture"])
    result = _experiment(spec).retrain(arch, report=tune.report, op_options=spec["op_options"],
                                       checkpoints=TuneCheckpoints())  # a trial run again continues
    backbone_revision = revision(spec["backbone"])
    with tempfile.TemporaryDirectory() as folder:
        write_artifacts(Path(folder), result, spec, backbone_revision)
        result = dataclasses.replace(result, backbone_revision=backbone_revision, placement=placement(started_at))
        tune.report({"done": 1, RETRAIN_KEY: packed(result)}, checkpoint=tune.Checkpoint.from_directory(folder))


def proxy_trial(config: dict[str, Any], cpus: float) -> None:
    """A black-box candidate (``config["candidate"]``: its searcher's suggestion): proxy-train it at the
    method's fidelity, reporting at every validation (a rung of its job's scheduler, if it has one:
    :func:`suite.rungs.job_scheduler`) its score so far, ratio, params and where it runs."""
    from ray import tune

    spec = config["trial"]
    started_at = utc_now()
    _setup(spec, cpus)
    method = _method(spec)
    exp = _experiment(spec, method.fidelity())
    space = _space(spec, exp.sites)
    arch = method.candidate(space, config["candidate"])
    if not arch.placements:  # nothing to train: a valid point of the space that scores nothing
        tune.report({SCORE: float("nan"), RATIO: 0.0, PARAMS: 0, PLACEMENT: json.dumps(placement(started_at))})
        return
    exp.retrain(arch, report=RungReport(exp, space.param_count(arch), started_at), test=False,
                op_options=spec["op_options"])


class RungReport:
    """The report of a proxy trial at each validation: the harness's row, plus ``SCORE`` (the best
    validation so far: the checkpoint the harness keeps, were the candidate stopped now), the
    parameters (the space's analytic count, which equals the harness's) and the trial's peak memory
    and placement so far. A candidate stopped early has its last such report as its result."""

    def __init__(self, exp, params: int, started_at: str):
        self.exp, self.started_at = exp, started_at
        self.counts = {RATIO: params / exp.sites.backbone_params, PARAMS: params}
        self.best = float("nan")

    def __call__(self, row: dict[str, Any]) -> None:
        from ray import tune

        from suite.harness import peak_memory_mb

        score = row[f"val_{self.exp.task.selection_metric}"]
        if math.isnan(self.best) or score > self.best:  # NaN: no finite score yet
            self.best = score
        tune.report({**row, SCORE: self.best, **self.counts, "peak_memory_mb": peak_memory_mb(self.exp.device),
                     PLACEMENT: json.dumps(placement(self.started_at))})


def run_trial(config: dict[str, Any], out: str, cpus: float) -> None:
    """The run's one trainable: the trial of kind ``config["kind"]``."""
    kind = config["kind"]
    if kind == SEARCH:
        search_trial(config, out, cpus)
    elif kind == CANDIDATE:
        proxy_trial(config, cpus)
    elif kind == RETRAIN:
        retrain_trial(config, cpus)
    else:
        raise ValueError(f"unknown trial kind {kind!r}; valid: {SEARCH}, {CANDIDATE}, {RETRAIN}")
