"""Run records: one self-describing JSON per (method, space, task, seed, budget).

A record holds the architecture, search and retrain time, trainable parameters (PEFT and head
apart), validation and test metrics, the harness and method settings, package versions and
hardware, and a status (``ok`` or ``failed`` with the error). Records are written atomically
(:func:`suite.rundir.write_json_atomic`), so an interrupted run never leaves half a record. Every table,
leaderboard and plot is computed from them (:mod:`suite.report`); ``python -m suite validate``
checks them against :data:`SCHEMA` (``results/README.md`` documents it).
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.rundir import RunDir, read_json, write_json_atomic

if TYPE_CHECKING:
    from suite.outcomes import RetrainResult, SearchOutcome
    from suite.plan import Job

SCHEMA_VERSION = 1
PACKAGES = ("torch", "transformers", "datasets", "ray", "botorch", "gpytorch", "optuna", "pandas", "numpy",
            "autopeft-suite")

_num = {"type": "number"}
_int = {"type": "integer"}
_count = {"type": "integer", "minimum": 0}
_nonneg = {"type": "number", "minimum": 0}
_metrics = {"type": "object", "additionalProperties": {"type": "number"}}
_nullable = lambda schema: {"anyOf": [schema, {"type": "null"}]}  # noqa: E731

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "AutoPEFT suite run record",
    "type": "object",
    "required": ["schema", "run_id", "status", "method", "method_kind", "space", "task", "seed", "backbone",
                 "budget", "architecture", "params", "metrics", "time", "environment", "created_at"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "run_id": {"type": "string", "pattern": "^[A-Za-z0-9_.=+-]+$"},
        "status": {"enum": ["ok", "failed"]},
        "error": _nullable({"type": "string"}),
        "method": {"type": "string"},
        "method_kind": {"enum": ["manual", "one-shot", "black-box", "transfer"]},
        "method_config": {"type": "object"},
        "space": {"type": "string"},
        "task": {"type": "string", "pattern": "^[a-z0-9_]+/[a-z0-9_]+$"},
        "seed": _int,
        "backbone": {"type": "string"},
        "backbone_params": {"type": "integer", "minimum": 1},
        "budget": {
            "type": "object", "required": ["fraction", "params"], "additionalProperties": False,
            "properties": {"fraction": _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
                           "params": _nullable({"type": "integer", "minimum": 1})},
        },
        "architecture": _nullable({"type": "object"}),
        "architecture_digest": _nullable({"type": "string"}),
        "params": {
            "type": "object", "additionalProperties": False,
            "properties": {"peft": _nullable(_count), "head": _nullable(_count), "ratio": _nullable(_nonneg),
                           "permyriad": _nullable(_nonneg)},
        },
        "metrics": {
            "type": "object", "required": ["selection", "validation", "test"], "additionalProperties": False,
            "properties": {"selection": {"type": "string"}, "validation": _metrics, "test": _metrics},
        },
        "time": {
            "type": "object", "additionalProperties": False,
            "properties": {"search_s": _nullable(_nonneg), "retrain_s": _nullable(_nonneg),
                           "eval_s": _nullable(_nonneg)},
        },
        "search": {"type": "object"},
        "retrain": {"type": "object"},
        "files": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["path", "sha256"],
            "properties": {"path": {"type": "string", "pattern": "^[^/]"}, "sha256": {"type": "string"},
                           "bytes": _count}}},
        "harness": {"type": "object"},
        "environment": {"type": "object", "required": ["packages", "python", "platform", "hardware", "git_commit"]},
        "created_at": {"type": "string"},
    },
    # What a status promises: an ok run has counts, times and test metrics; a failed run says why.
    "allOf": [
        {"if": {"properties": {"status": {"const": "ok"}}},
         "then": {"required": ["backbone_params"], "properties": {
             "error": {"type": "null"},
             "params": {"required": ["peft", "head", "ratio", "permyriad"],
                        "properties": {"peft": _int, "head": _int, "ratio": _num, "permyriad": _num}},
             "metrics": {"properties": {"validation": {"minProperties": 1}, "test": {"minProperties": 1}}},
             "time": {"required": ["search_s", "retrain_s"], "properties": {"search_s": _num, "retrain_s": _num}},
         }}},
        {"if": {"properties": {"status": {"const": "failed"}}},
         "then": {"required": ["error"], "properties": {"error": {"type": "string", "minLength": 1}}}},
    ],
}


def run_id(method: str, space: str, task: str, seed: int, budget_params: int | None) -> str:
    """``<method>--<space>--<task with / as _>--seed<seed>--b<budget or none>``: a file-safe key."""
    budget = "none" if budget_params is None else str(budget_params)
    return f"{method}--{space}--{task.replace('/', '_')}--seed{seed}--b{budget}"


def environment() -> dict[str, Any]:
    """Package versions, Python, platform, hardware and the git commit of the suite."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    hardware: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    try:
        import torch

        if torch.cuda.is_available():
            hardware["gpu"] = torch.cuda.get_device_name(0)
            hardware["gpu_count"] = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - hardware probing must never fail a run
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"packages": packages, "python": platform.python_version(), "platform": platform.platform(),
            "hardware": hardware, "git_commit": commit}


def build_record(job: Job, status: str, *, backbone: str, backbone_params: int, harness: dict[str, Any],
                 method_config: dict[str, Any], environment: dict[str, Any], search: SearchOutcome | None = None,
                 retrain: RetrainResult | None = None, error: str | None = None, recipe: str = "suite",
                 files: dict | None = None, lr: float | None = None) -> dict[str, Any]:
    """A record (see :data:`SCHEMA`) from the values a run holds in memory.

    Args:
        job: the plan's job.
        status: ``ok`` or ``failed`` (then ``error`` says why).
        harness: the harness settings the plan sets (``Plan.harness_overrides``).
        search: what the job's search found (None: it failed before finding an architecture).
        retrain: an ok retrain (None for a failed job).
        recipe: the retrain recipe's name (``suite.recipe``); its op settings are in ``retrain``.
        files: the retrain's weights and predictions beside the record (path relative to the run
            folder, sha256, bytes).
        lr: the learning rate the retrain trained at (``suite.learning_rate``).
    """
    from spaces.architecture import Architecture
    from suite.tasks import get_task

    architecture = search.architecture if search else None
    params: dict[str, Any] = {"peft": None, "head": None, "ratio": None, "permyriad": None}
    metrics = {"selection": get_task(job.task).selection_metric, "validation": {}, "test": {}}
    times = {"search_s": search.search_s if search else None, "retrain_s": None, "eval_s": None}
    retrain_info: dict[str, Any] = {}
    if retrain:
        params = {"peft": retrain.peft_params, "head": retrain.head_params, "ratio": retrain.ratio,
                  "permyriad": retrain.ratio * 1e4}
        metrics.update(validation=retrain.validation, test=retrain.test)
        times.update(retrain_s=retrain.train_time_s, eval_s=retrain.eval_time_s)
        retrain_info = {"steps": retrain.steps, "best_step": retrain.best_step,
                        "peak_memory_mb": retrain.peak_memory_mb, "history": retrain.history,
                        "recipe": {"name": recipe, "op_options": retrain.op_options}, "pooling": retrain.pooling,
                        "backbone_revision": retrain.backbone_revision, "placement": retrain.placement,
                        "attempts": retrain.attempts, "resumed_at": retrain.resumed_at, "precision": retrain.precision,
                        "train_examples": retrain.train_examples, "train_tokens": retrain.train_tokens, "lr": lr}
    # what ran (bf16 or fp32), not what was asked ("auto"): the retrain's, else the search's
    precision = retrain_info.get("precision") or (search.info.get("precision") if search else None)
    if precision:
        harness = {**harness, "precision": precision}
    if retrain:  # also when it is the default (a plan holds only what differs from the defaults)
        harness = {**harness, "checkpoint_every": retrain.checkpoint_every}
    return {
        "schema": SCHEMA_VERSION, "run_id": job.run_id, "status": status, "error": error,
        "method": job.method, "method_kind": job.kind, "method_config": method_config,
        "space": job.space, "task": job.task, "seed": job.seed,
        "backbone": backbone, "backbone_params": backbone_params,
        "budget": {"fraction": job.budget_fraction, "params": job.budget_params},
        "architecture": architecture,
        "architecture_digest": Architecture.from_dict(architecture).digest() if architecture else None,
        "params": params, "metrics": metrics, "time": times,
        "search": (search.info if search else None) or {}, "retrain": retrain_info, "harness": harness,
        "files": files or {}, "environment": environment, "created_at": now(),
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_record(out: Path, record: dict[str, Any]) -> Path:
    """Validate and atomically write ``record`` to ``<out>/records/<run_id>.json``."""
    validate_record(record)
    path = RunDir(out).record(record["run_id"])
    write_json_atomic(path, record)
    return path


@functools.cache
def _validator():
    import jsonschema

    cls = jsonschema.validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)
    return cls(SCHEMA)


def _best_error(record: dict[str, Any]):
    """The most relevant schema violation (as ``jsonschema.validate`` reports it), or None."""
    from jsonschema.exceptions import best_match

    return best_match(_validator().iter_errors(record))


def validate_record(record: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first violation of :data:`SCHEMA` or of what it cannot say.

    Beyond the schema: the run id is :func:`run_id` of the record's keys, an ok record's selection
    metric is among its validation and test metrics, every metric, count, ratio and time is finite
    (JSON's ``NaN`` and ``Infinity`` are numbers to the schema), and ``ratio`` = ``peft / backbone_params``,
    ``permyriad`` = ``ratio × 1e4`` (relative tolerance 1e-6).
    """
    if not isinstance(record, dict):
        raise ValueError(f"a record is a JSON object, got {type(record).__name__}")
    name = record.get("run_id", "?")
    error = _best_error(record)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"record {name}: {where}: {error.message}")
    expected = run_id(record["method"], record["space"], record["task"], record["seed"], record["budget"]["params"])
    if name != expected:
        raise ValueError(f"record {name}: run_id: expected {expected!r} from its method, space, task, seed and budget")
    if record["status"] == "ok":
        selection, metrics = record["metrics"]["selection"], record["metrics"]
        for split in ("validation", "test"):
            if selection not in metrics[split]:
                raise ValueError(f"record {name}: metrics/{split}: lacks the selection metric {selection!r} "
                                 f"(has {', '.join(metrics[split])})")
    numbers = [(f"{part}/{k}", v) for part, values in [("metrics/validation", record["metrics"]["validation"]),
                                                       ("metrics/test", record["metrics"]["test"]),
                                                       ("params", record["params"]), ("time", record["time"])]
               for k, v in values.items()]
    for where, value in numbers:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"record {name}: {where}: {value} is not a finite number")
    params, total = record["params"], record.get("backbone_params")
    checks = [("ratio", params.get("ratio"), params.get("peft"), total),
              ("permyriad", params.get("permyriad"), params.get("ratio"), 1e-4)]
    for field_name, value, numerator, denominator in checks:
        if None not in (value, numerator, denominator) and not math.isclose(value, numerator / denominator,
                                                                             rel_tol=1e-6):
            raise ValueError(f"record {name}: params/{field_name}: {value} != {numerator / denominator}")


def read_records(out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record under ``<out>/records`` read and validated once: the valid records, and the
    problems of the others, each prefixed by its file name."""
    records, problems = [], []
    for path in RunDir(out).record_files():
        try:
            record = read_json(path, "a record")
            validate_record(record)
            if record["run_id"] != path.stem:
                raise ValueError(f"run_id {record['run_id']!r} does not match the file name")
            records.append(record)
        except ValueError as e:
            problems.append(f"{path.name}: {e}")
    return records, problems


def valid_records(out: Path) -> list[dict[str, Any]]:
    """Every record under ``<out>/records``, all valid, or a ``ValueError`` naming the first bad file
    (a record that is not one, or another JSON file such as ``notes.json``) and how many there are."""
    records, problems = read_records(out)
    if problems:
        raise ValueError(f"{len(problems)} invalid record(s) in {out}, e.g. {problems[0]}; "
                         f"`python -m suite validate --out {out}` lists them")
    return records


def validate_dir(out: Path) -> list[str]:
    """Problems of every record under ``<out>/records``, each prefixed by its file name (empty: all valid)."""
    return read_records(out)[1]
