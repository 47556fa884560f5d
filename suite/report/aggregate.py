"""From records to tables: the leaderboard (one row per record), table rows, and the summary over seeds.

A *table row* is one method as it ran: backbone × method × setting (how it departs from the
published method or the suite's recipe) × space × budget (:func:`row_key`). The summary has one row
per table row × task (mean, sample standard deviation and a 95 % interval over seeds, or over test
examples when there is one seed) and an ``AVG`` row per table row over the run's tasks.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterable
from typing import Any

import pandas as pd

from suite.tasks import BENCHMARK_TITLES, GROUPS, TASKS

KIND_ORDER = {"manual": 0, "one-shot": 1, "black-box": 1, "transfer": 2}
KEY = ["backbone", "method", "method_kind", "setting", "space", "budget_fraction", "budget_params"]  # one table row
AVG = "AVG"
TIME_COLUMNS = ("ratio_permyriad", "search_min", "search_compute_min", "retrain_min", "peak_memory_mb",
                "train_examples_per_s", "train_tokens_per_s", "adapter_bytes")
LEADERBOARD_FORMAT = "%.10g"
SUMMARY_FORMAT = "%.6g"


# ---- leaderboard ------------------------------------------------------------------------------------
def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def _hardware(record: dict[str, Any]) -> str | None:
    hardware = record.get("environment", {}).get("hardware", {})
    return hardware.get("gpu") or hardware.get("cpu")


def precision(record: dict[str, Any]) -> str | None:
    """What a record's training ran at, ``bf16`` (autocast) or ``fp32``; a record from before
    ``--precision`` ran at the old default, bf16 on a GPU only; None for a failed run that never trained."""
    resolved = (record.get("retrain") or {}).get("precision") or (record.get("harness") or {}).get("precision")
    if resolved in ("bf16", "fp32"):
        return resolved
    if record["status"] != "ok":
        return None
    hardware = record.get("environment", {}).get("hardware", {})
    on_gpu = hardware.get("device") == "cuda" or (hardware.get("gpus_per_trial") or 0) > 0
    return "bf16" if on_gpu and (record.get("harness") or {}).get("bf16", True) else "fp32"


def throughput(record: dict[str, Any], what: str) -> float | None:
    """The retrain's ``train_examples`` or ``train_tokens`` per second of training (its evaluations
    on validation left out); None for a record that does not count them."""
    count, time = (record.get("retrain") or {}).get(f"train_{what}"), record["time"]
    seconds = (time.get("retrain_s") or 0) - (time.get("eval_s") or 0)
    return count / seconds if count and seconds > 0 else None


def setting(record: dict[str, Any]) -> str:
    """How a record's run departs from the method as published and the suite's recipe, for its row
    label: the method's own ``settings()`` (e.g. "1st-order DARTS"), "authors' recipe", and "lr 2e-5"
    for a retrain at another learning rate than its run's (:func:`lr_label`)."""
    from methods import METHODS
    from suite.recipe import recipe_label

    parts = []
    transfer = (record.get("search") or {}).get("transfer")
    if transfer is not None:  # a structure retrained on another task: apart from searched rows
        parts.append(f"from {transfer['task']}" if transfer.get("task") else "given architecture")
    elif record["method"] in METHODS:
        with contextlib.suppress(ValueError):  # a config this version no longer reads: no label, still a table
            parts += METHODS.get(record["method"])(record.get("method_config") or {}).settings()
    parts.append(recipe_label(((record.get("retrain") or {}).get("recipe") or {}).get("name", "suite")))
    parts.append(lr_label(record))
    return ", ".join(p for p in parts if p)


def lr_label(record: dict[str, Any]) -> str:
    """``lr 2e-5`` for a retrain at another learning rate than its run's ``--lr`` (full fine-tuning's
    own), else nothing: a grid's rows all follow one protocol, which the tables' note says."""
    from suite.learning_rate import DEFAULT_LR, lr_text

    retrain = record.get("retrain") or {}
    if retrain.get("lr") is None or "lr_grid" in retrain:
        return ""
    return "" if retrain["lr"] == (record.get("harness") or {}).get("lr", DEFAULT_LR) else f"lr {lr_text(retrain['lr'])}"


def step_capped(record: dict[str, Any]) -> bool:
    """A search that stopped at its step cap before doing what its method does (BIPEFT: before its Z
    triggers), whether the plan was too short (``--allow-step-cap``) or the method did not get there."""
    return (record.get("search") or {}).get("stop_reason") == "step_cap"


def _compute_seconds(record: dict[str, Any]) -> float | None:
    """Search compute: the sum of a black-box search's trial seconds, a one-shot search's seconds."""
    search = record.get("search") or {}
    if search.get("trial_seconds_total") is not None:
        return search["trial_seconds_total"]
    return record["time"].get("search_s")


def leaderboard(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record (see ``results/README.md``), in the order given (by run id from disk)."""
    records = list(records)
    metrics = sorted({m for r in records for split in ("validation", "test") for m in r["metrics"][split]})
    rows = []
    for r in records:
        params, time, scores = r["params"], r["time"], r["metrics"]
        row = {
            "run_id": r["run_id"], "status": r["status"], "error": r.get("error"),
            "method": r["method"], "method_kind": r["method_kind"], "setting": setting(r),
            "step_capped": step_capped(r), "space": r["space"],
            "task": r["task"],
            "seed": r["seed"], "backbone": r["backbone"], "backbone_params": r.get("backbone_params"),
            "budget_fraction": r["budget"]["fraction"], "budget_params": r["budget"]["params"],
            "peft_params": params.get("peft"), "head_params": params.get("head"),
            "ratio_permyriad": params.get("permyriad"), "selection_metric": scores["selection"],
        }
        row |= {f"val_{m}": scores["validation"].get(m) for m in metrics}
        row |= {f"test_{m}": scores["test"].get(m) for m in metrics}
        row |= {
            "test_score": scores["test"].get(scores["selection"]),
            "search_min": _minutes(time.get("search_s")), "search_compute_min": _minutes(_compute_seconds(r)),
            "retrain_min": _minutes(time.get("retrain_s")),
            "peak_memory_mb": (r.get("retrain") or {}).get("peak_memory_mb"),
            "search_peak_memory_mb": (r.get("search") or {}).get("peak_memory_mb"),
            "precision": precision(r), "train_examples_per_s": throughput(r, "examples"),
            "train_tokens_per_s": throughput(r, "tokens"),
            "adapter_bytes": ((r.get("files") or {}).get("weights") or {}).get("bytes"),
            "hardware": _hardware(r), "digest": r.get("architecture_digest"),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def backbone_sizes(lb: pd.DataFrame) -> dict[str, int | None]:
    """Each backbone of the leaderboard and its parameter count (None where no record gives it)."""
    return {b: None if missing(n) else int(n) for b, n in lb.groupby("backbone").backbone_params.max().items()}


def metric_names(lb: pd.DataFrame) -> list[str]:
    """The metric names of the leaderboard's ``test_<metric>`` columns."""
    return [c[len("test_"):] for c in lb.columns if c.startswith("test_") and c != "test_score"]


# ---- grouping and order -----------------------------------------------------------------------------
def missing(value: Any) -> bool:
    """None, or a float NaN (pandas' missing value in a number column)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_key(row: pd.Series | dict[str, Any]) -> tuple:
    """``(backbone, method, method_kind, setting, space, budget_fraction, budget_params)``, None for
    no budget: one row of the tables (a method's variants and recipes are separate rows)."""
    fraction, params = row["budget_fraction"], row["budget_params"]
    setting = row["setting"] if isinstance(row["setting"], str) else ""
    return (row["backbone"], row["method"], row["method_kind"], setting, row["space"],
            None if missing(fraction) else float(fraction), None if missing(params) else int(params))


def row_keys(lb: pd.DataFrame) -> pd.Series:
    """:func:`row_key` of every leaderboard row."""
    return pd.Series([row_key(r) for r in lb.to_dict("records")], index=lb.index, dtype=object)


def task_label(task: str) -> str:
    """How the tables print a task (its ``Task.label``; the short name of an unknown task)."""
    return TASKS.get(task).display_name if task in TASKS else task.split("/")[1]


def method_name_label(method: str) -> str:
    """How the tables print a method (its ``Method.label``; the name of a method not registered here)."""
    from methods import METHODS

    return METHODS.get(method).display_name() if method in METHODS else method


def task_blocks(tasks: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Tasks grouped by benchmark: GLUE, then SuperGLUE (the paper's column order, others after
    it alphabetically), then every other benchmark alphabetically (e.g. ``demo``)."""
    by_benchmark: dict[str, list[str]] = {}
    for task in sorted(set(tasks)):
        by_benchmark.setdefault(task.split("/")[0], []).append(task)
    blocks = []
    for bench in sorted(by_benchmark, key=lambda b: (list(GROUPS).index(b) if b in GROUPS else len(GROUPS), b)):
        title, order = BENCHMARK_TITLES.get(bench, bench), GROUPS.get(bench, ())
        names = by_benchmark[bench]
        rank = {t: i for i, t in enumerate(order)}
        blocks.append((title, sorted(names, key=lambda t: (rank.get(t, len(rank)), t))))
    return blocks


def ordered_tasks(tasks: Iterable[str]) -> list[str]:
    return [t for _, names in task_blocks(tasks) for t in names]


def ordered_keys(lb: pd.DataFrame) -> list[tuple]:
    """Table rows as in the paper's Table 1: manual baselines by decreasing ratio, then searched
    methods by space, budget and name."""
    ok = lb[lb.status == "ok"]
    ratio = {row_key(r): r["ratio_permyriad"] for _, r in ok.groupby(KEY, dropna=False).ratio_permyriad.mean()
             .reset_index().iterrows()}

    def order(key: tuple) -> tuple:
        backbone, method, kind, variant, space, _, budget = key
        r = ratio.get(key, math.nan)
        manual_rank = -r if kind == "manual" and not math.isnan(r) else 0.0
        return (backbone, KIND_ORDER[kind], manual_rank, space, budget or 0, method, variant)

    return sorted(set(row_keys(lb)), key=order)


def capped_keys(lb: pd.DataFrame) -> set[tuple]:
    """Table rows with a step-capped search among their runs (their labels carry a †)."""
    return {k for k, capped in zip(row_keys(lb), lb.step_capped) if capped}


def several_backbones(lb: pd.DataFrame) -> bool:
    """Whether the run has more than one backbone: then every row label names its own (``[t5-large]``)."""
    return lb.backbone.nunique() > 1


def row_labels(lb: pd.DataFrame) -> dict[tuple, str]:
    """Every table row's :func:`method_label` by its key, in table order (the tables', plots' and
    ``architectures.md``'s names of a row)."""
    several = several_backbones(lb)
    return {key: method_label(key, several) for key in ordered_keys(lb)}


def method_label(key: tuple, several_backbones: bool = False, budget: bool = True, space: bool = True) -> str:
    """``LoRA(r=8)`` for a manual baseline; ``BIPEFT (S2, ≤1.39‱)`` for a searched method (its
    space and budget, each optional); a setting that departs from the published method or the
    suite's recipe follows: ``S3Delta (S2, ≤1.39‱; 1st-order DARTS)``."""
    backbone, method, kind, variant, space_name, fraction, params = key
    label = method_name_label(method)
    parts = []
    if kind == "transfer":  # "BIPEFT (from superglue/rte)"
        label += f" ({variant})"
        return f"{label} [{backbone}]" if several_backbones else label
    if kind != "manual":
        parts = [space_name.upper()] if space else []
        if budget and (fraction is not None or params is not None):
            parts.append(f"≤{fraction * 1e4:.2f}‱" if fraction is not None else f"≤{params:,} params")
    text = ", ".join(parts)
    if variant:
        text = f"{text}; {variant}" if text else variant
    label += f" ({text})" if text else ""
    return f"{label} [{backbone}]" if several_backbones else label


# ---- summary ----------------------------------------------------------------------------------------
def _mean_std(values: pd.Series) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; NaN for one value) of the non-missing values.

    ``statistics`` computes both exactly rounded, so the tables are the same bytes on every machine.
    """
    values = [float(v) for v in values.dropna()]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _interval(ok: pd.DataFrame, predictions: dict[str, list] | None) -> tuple[float, float, str]:
    """The 95 % interval of a cell's test score: over seeds (two or more), else over the one run's
    test examples (when its predictions are at hand; ``too few examples`` for one); NaN otherwise."""
    from suite.report import stats

    scores = ok.test_score.dropna()
    if len(scores) >= 2:
        return (*stats.seed_interval(scores.tolist()), "seeds")
    if len(scores) == 1 and predictions and ok.run_id.iloc[0] in predictions:
        task = TASKS.get(ok.task.iloc[0])
        try:
            return (*stats.example_interval(task, predictions[ok.run_id.iloc[0]]), "examples")
        except stats.TooFewExamples:
            return math.nan, math.nan, stats.TOO_FEW
    return math.nan, math.nan, ""


def summary(lb: pd.DataFrame, predictions: dict[str, list] | None = None) -> pd.DataFrame:
    """Mean, std and a 95 % interval over seeds per table row × task, then an AVG row per table row.

    ``predictions`` (run id -> its test prediction rows) give one-seed cells their interval over
    test examples."""
    metrics = metric_names(lb)
    run_tasks = ordered_tasks(lb.task)
    groups: dict[tuple, list[int]] = {}
    for index, key in row_keys(lb).items():
        groups.setdefault((key, lb.at[index, "task"]), []).append(index)
    rows = []
    for key in ordered_keys(lb):
        per_task = []
        for task in run_tasks:
            if (key, task) not in groups:
                continue
            g = lb.loc[groups[key, task]]
            ok = g[g.status == "ok"]
            row = dict(zip(KEY, key)) | {"task": task, "selection_metric": g.selection_metric.iloc[0],
                                         "n_seeds": len(ok), "n_failed": int((g.status == "failed").sum())}
            row["test_score_mean"], row["test_score_std"] = _mean_std(ok.test_score)
            row["test_score_ci_low"], row["test_score_ci_high"], row["ci_over"] = _interval(ok, predictions)
            for m in metrics:
                row[f"test_{m}_mean"], row[f"test_{m}_std"] = _mean_std(ok[f"test_{m}"])
            for col in TIME_COLUMNS:
                row[f"{col}_mean"], row[f"{col}_std"] = _mean_std(ok[col])
            row["note"] = ""
            per_task.append(row)
        rows += per_task
        rows.append(_average_row(key, per_task, run_tasks))
    table = pd.DataFrame(rows)
    first = [*KEY, "task", "selection_metric", "n_seeds", "n_failed", "n_tasks"]
    return table[first + [c for c in table.columns if c not in first and c != "note"] + ["note"]]


def _average_row(key: tuple, per_task: list[dict[str, Any]], run_tasks: list[str]) -> dict[str, Any]:
    """Mean over tasks of the per-task means (the paper's AVG); a score only if no task is missing."""
    scored = [r for r in per_task if r["n_seeds"] > 0]
    missing = [t for t in run_tasks if t not in {r["task"] for r in scored}]
    row: dict[str, Any] = dict(zip(KEY, key)) | {"task": AVG,
        "selection_metric": "", "n_seeds": None, "n_failed": sum(r["n_failed"] for r in per_task),
        "test_score_mean": math.nan if missing else statistics.fmean(r["test_score_mean"] for r in scored),
    }
    for col in TIME_COLUMNS:
        values = [r[f"{col}_mean"] for r in scored if not math.isnan(r[f"{col}_mean"])]
        row[f"{col}_mean"] = statistics.fmean(values) if values else math.nan
    row["n_tasks"] = len(scored)
    row["note"] = f"no AVG: no ok run on {', '.join(missing)}" if missing else f"mean over {len(scored)} tasks"
    return row
