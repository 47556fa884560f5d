"""``run --log tensorboard|mlflow|wandb``: a run's trials and records, also in a tracking tool.

* **Per trial, live:** Ray Tune's own logger callbacks (:func:`logger_callbacks`):
  ``TBXLoggerCallback`` (TensorBoard event files in each trial's folder under Ray Tune's storage),
  ``MLflowLoggerCallback`` (one MLflow run per trial, tagged ``suite.kind=trial``) and
  ``WandbLoggerCallback`` (one W&B run per trial). Each gets the trial's config and every result the
  trial reports as it trains (a retrain's validation metrics, a search's steps, a candidate's score).
* **Per record, final:** a callback beside them (:class:`RecordLog`) logs each record the run writes,
  as it appears, with the leaderboard's columns (:func:`suite.report.aggregate.leaderboard`): its
  identity and settings as parameters (method, task, seed, budget, ``harness.*``, the method's
  options), its numbers as metrics (``test_*``, ``val_*``, parameters, minutes, memory). MLflow:
  one run per record tagged ``suite.kind=record`` (the MLflow table of those runs is a leaderboard
  across runs); TensorBoard: one HParams session per record under ``<out>/tensorboard/``; W&B: one
  run per record with ``job_type=record``, its numbers in the run's summary. ``<out>/tracking.json``
  remembers what was logged, so ``--resume`` logs only what is new (a record rewritten, e.g. a
  failed job that now succeeded, is logged again).

Where: MLflow's ``MLFLOW_TRACKING_URI`` (MLflow's default without it: ``sqlite:///mlflow.db`` in the
working folder) and ``MLFLOW_EXPERIMENT_NAME`` (default ``autopeft-suite``); W&B's ``WANDB_PROJECT``
(default ``autopeft-suite``), ``WANDB_API_KEY`` or ``WANDB_MODE=offline``. The callbacks run in the
driver. A backend whose package is missing (naming the extra to install), an MLflow store that does
not answer, or W&B without a login is refused before Ray starts (:func:`check_tracking`). A record
that cannot be logged later is one warning line (the run goes on; ``--resume`` logs it); Ray Tune
does not catch its own callbacks' errors, so a store that fails while a trial reports stops the run.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suite.plan import UsageError
from suite.rundir import TENSORBOARD, TRACKING_FILE, RunDir, read_json, write_json_atomic

TRACKERS = ("tensorboard", "mlflow", "wandb")
# backend: (the module it needs, how to install it)
REQUIRES = {"tensorboard": ("tensorboardX", "pip install tensorboardX (a dependency of ray[tune])"),
            "mlflow": ("mlflow", "pip install 'autopeft-suite[mlflow]'"),
            "wandb": ("wandb", "pip install 'autopeft-suite[wandb]'")}
PROJECT = "autopeft-suite"  # the MLflow experiment and W&B project unless the environment names one
# The leaderboard's columns that say what a record is (logged as parameters); its other numbers are metrics.
IDENTITY = ("run_id", "status", "method", "method_kind", "setting", "space", "task", "seed", "backbone",
            "budget_fraction", "budget_params", "selection_metric", "step_capped", "precision", "hardware", "digest",
            "error")


def parse_log(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--log mlflow --log tensorboard`` or ``--log mlflow,tensorboard``: the backends, each once, in order."""
    kinds: list[str] = []
    for value in values or ():
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise UsageError(f"--log is empty; valid: {', '.join(TRACKERS)}")
        for item in items:
            if item not in TRACKERS:
                raise UsageError(f"unknown --log {item!r}; valid: {', '.join(TRACKERS)}")
            kinds += [item] if item not in kinds else []
    return tuple(kinds)


def check_tracking(kinds: Sequence[str], out: Path | str) -> str:
    """Refuse a backend whose package is missing (naming the extra), or W&B without a login or offline
    mode; where the backends log, as a line to print after the run's (empty without ``--log``)."""
    for kind in kinds:
        module, install = REQUIRES[kind]
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"--log {kind} needs the {module} package, which is not installed: {install}")
    if "mlflow" in kinds:
        _check_mlflow()
    if "wandb" in kinds and os.environ.get("WANDB_MODE") not in ("offline", "disabled") \
            and not os.environ.get("WANDB_API_KEY"):
        import wandb

        try:  # as Ray's WandbLoggerCallback asks, but now, before Ray starts
            wandb.ensure_configured()
            logged_in = bool(wandb.api.api_key)
        except AttributeError:
            logged_in = False
        if not logged_in:
            raise UsageError("--log wandb needs a W&B account: `wandb login` or WANDB_API_KEY, or WANDB_MODE=offline "
                             "(then `wandb sync` the runs later)")
    return f"\nlogging to {describe(kinds, out)}" if kinds else ""


def _check_mlflow() -> None:
    """The MLflow tracking store answers (one request, no retries): Ray Tune does not catch its callbacks'
    errors, so a store that fails as a stage starts would stop the run there."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
    try:
        mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - whatever the store says, it is one line before Ray starts
        uri, text = mlflow.get_tracking_uri(), " ".join(str(e).split())
        if "MLFLOW_ALLOW_FILE_STORE" in text:
            raise UsageError(f"--log mlflow: MLflow 3 refuses the file store {uri} unless MLFLOW_ALLOW_FILE_STORE=true; "
                             "or point MLFLOW_TRACKING_URI at a server or sqlite:///PATH/mlflow.db") from None
        raise UsageError(f"--log mlflow: the tracking store {uri} does not answer ({text[:200]}); "
                         "check MLFLOW_TRACKING_URI") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def mlflow_experiment() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or PROJECT


def wandb_project() -> str:
    return os.environ.get("WANDB_PROJECT") or PROJECT


def describe(kinds: Sequence[str], out: Path | str) -> str:
    """Where ``kinds`` log, in one line (what ``run`` prints as it starts)."""
    where = {"tensorboard": f"TensorBoard (tensorboard --logdir {out})", "wandb": f"W&B project {wandb_project()}"
             + (" (offline)" if os.environ.get("WANDB_MODE") == "offline" else "")}
    if "mlflow" in kinds:
        import mlflow

        where["mlflow"] = f"MLflow {mlflow.get_tracking_uri()}, experiment {mlflow_experiment()}"
    return "; ".join(where[kind] for kind in kinds)


def logger_callbacks(kinds: Sequence[str], out: Path | str) -> list:
    """Ray Tune's logger callbacks for ``kinds`` (per trial), then the one that logs each record of
    the run in ``out`` (per record); empty without ``--log``. What a Tuner's ``RunConfig`` adds."""
    if not kinds:
        return []
    out = Path(out)
    return [*(_trial_logger(kind, out) for kind in kinds), record_callback(kinds, out)]


def _trial_logger(kind: str, out: Path):
    if kind == "tensorboard":
        from ray.tune.logger import TBXLoggerCallback

        return TBXLoggerCallback()  # Ray Tune adds it by itself when tensorboardX is there: here it is asked for
    if kind == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        return MLflowLoggerCallback(experiment_name=mlflow_experiment(),
                                    tags={"suite.kind": "trial", "suite.out": str(out)})
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(project=wandb_project(), group=out.name, job_type="trial")


def record_callback(kinds: Sequence[str], out: Path):
    """A Ray Tune callback that runs :meth:`RecordLog.update` as trials end and as the experiment ends."""
    from ray import tune

    class RecordLogger(tune.Callback):
        def __init__(self):
            self.records = RecordLog(kinds, out)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.records.update()

        def on_trial_error(self, iteration, trials, trial, **info):
            self.records.update()

        def on_experiment_end(self, trials, **info):
            self.records.update()

    return RecordLogger()


# ---- records ----------------------------------------------------------------------------------------
def record_fields(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """A record as ``(parameters, metrics)``: its leaderboard row split into what it is (and its
    harness settings and method options) and the numbers it measured."""
    from suite.report.aggregate import leaderboard, missing

    row = leaderboard([record]).iloc[0].to_dict()
    params = {k: _param(row[k]) for k in IDENTITY if k in row and not missing(row[k])}
    if "error" in params:
        params["error"] = params["error"].splitlines()[0][:250]
    params |= {f"harness.{k}": _param(v) for k, v in (record.get("harness") or {}).items() if v is not None}
    params |= {f"{record['method']}.{k}": _param(v) for k, v in (record.get("method_config") or {}).items()
               if v is not None}
    metrics = {k: float(v) for k, v in row.items() if k not in IDENTITY and _number(v)}
    return params, metrics


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)  # numpy's too


def _param(value: Any) -> bool | int | float | str:
    value = value.item() if hasattr(value, "item") else value  # numpy scalars
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class RecordLog:
    """Logs each record of the run in ``out`` to every backend of ``kinds`` once (see the module docstring)."""

    def __init__(self, kinds: Sequence[str], out: Path | str):
        self.kinds, self.run = tuple(kinds), RunDir(out)
        self._sinks: dict[str, Any] = {}
        self._broken: set[str] = set()

    def __getstate__(self):  # Ray Tune pickles its callbacks with the experiment: no open writers or clients
        return {**self.__dict__, "_sinks": {}}

    def update(self) -> int:
        """Log the records written (or rewritten) since they were last logged; returns how many logs."""
        if not self.run.records.is_dir():
            return 0
        ledger_path = self.run.root / TRACKING_FILE
        ledger = read_json(ledger_path, "the tracking ledger") if ledger_path.is_file() else {}
        logged = 0
        for path in self.run.record_files(empty_ok=True):
            stamp = path.stat().st_mtime_ns  # records are written by a rename: a rewritten record is new
            todo = [k for k in self.kinds if k not in self._broken and ledger.get(k, {}).get(path.stem) != stamp]
            if not todo:
                continue
            record = read_json(path, "a record")
            params, metrics = record_fields(record)
            for kind in todo:
                try:
                    self._sink(kind).log(record, params, metrics)
                except Exception as e:  # noqa: BLE001 - a tracking server's trouble must not stop the run
                    self._broken.add(kind)
                    print(f"--log {kind}: could not log record {path.stem} ({type(e).__name__}: {e}); "
                          f"the run goes on, and --resume logs what is missing", file=sys.stderr)
                    continue
                ledger.setdefault(kind, {})[path.stem] = stamp
                logged += 1
        if logged:
            write_json_atomic(ledger_path, ledger)
        return logged

    def _sink(self, kind: str):
        if kind not in self._sinks:
            self._sinks[kind] = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _Wandb}[kind](self.run.root)
        return self._sinks[kind]


class _TensorBoard:
    """One HParams session per record, in ``<out>/tensorboard/<run_id>``."""

    def __init__(self, out: Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(out / TENSORBOARD))

    def log(self, record: dict, params: dict, metrics: dict) -> None:
        self.writer.add_hparams(params, metrics, name=record["run_id"])


class _MLflow:
    """One finished (or failed) MLflow run per record, tagged ``suite.kind=record``."""

    def __init__(self, out: Path):
        import mlflow

        self.client, self.out = mlflow.MlflowClient(), out
        experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")
        if experiment is None:
            found = self.client.get_experiment_by_name(mlflow_experiment())
            experiment = found.experiment_id if found else self.client.create_experiment(mlflow_experiment())
        self.experiment = experiment

    def log(self, record: dict, params: dict, metrics: dict) -> None:
        import time

        from mlflow.entities import Metric, Param

        tags = {"suite.kind": "record", "suite.out": str(self.out), "suite.run_id": record["run_id"]}
        run = self.client.create_run(self.experiment, run_name=record["run_id"], tags=tags).info.run_id
        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(run, params=items[start:start + 100])
        now = int(time.time() * 1000)
        self.client.log_batch(run, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        self.client.set_terminated(run, "FINISHED" if record["status"] == "ok" else "FAILED")


class _Wandb:
    """One W&B run per record (``job_type=record``): its parameters as the config, its numbers as the summary."""

    def __init__(self, out: Path):
        import wandb

        self.wandb, self.out = wandb, out

    def log(self, record: dict, params: dict, metrics: dict) -> None:
        import hashlib

        key = hashlib.sha256(f"{self.out.resolve()}:{record['run_id']}".encode()).hexdigest()[:20]
        run = self.wandb.init(project=wandb_project(), id=f"record-{key}", name=record["run_id"], group=self.out.name,
                              job_type="record", config=params, dir=str(self.out), resume="allow")
        run.summary.update(metrics)
        run.finish(exit_code=0 if record["status"] == "ok" else 1)
