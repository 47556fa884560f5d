"""Methods' own training: the score a searching method reports for the model it trained itself, apart
from the harness's retrain of the architecture it exported.

AdaLoRA keeps its model's score after its own training (HF peft's AdaLoRA, its rank schedule and
scaling) on the validation split as ``own_validation`` in the record's search info. accuracy.md shows
it as a small table of its own, each row beside the harness retrain's validation score of the same
runs, so that both are read on one split. The method never sees the test split, so the own score has
no test cell, and no mean, rank or comparison reads it.
"""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd

from suite.report.aggregate import (
    method_label,
    ordered_keys,
    ordered_tasks,
    row_keys,
    several_backbones,
    task_label,
)
from suite.report.tables import Table, cell

OWN_SCORE = "own_validation"  # the search info's key: validation metrics ×100 of the method's own model


def own_score(record: dict[str, Any]) -> float | None:
    """A record's own-training score in its selection metric (None: its method reports none)."""
    own = (record.get("search") or {}).get(OWN_SCORE)
    return own.get(record["metrics"]["selection"]) if isinstance(own, dict) else None


def retrain_score(record: dict[str, Any]) -> float | None:
    """The harness retrain's validation score of a record, in its selection metric."""
    return record["metrics"]["validation"].get(record["metrics"]["selection"])


def _cell(values: list[float], n_run_seeds: int) -> str:
    """``mean [low, high]`` over seeds, as the tables above (:func:`suite.report.tables.cell`)."""
    from suite.report import stats

    if not values:
        return ""
    low, high = stats.seed_interval(values) if len(values) > 1 else (float("nan"), float("nan"))
    return cell({"test_score_mean": statistics.fmean(values), "n_seeds": len(values), "n_failed": 0,
                 "test_score_ci_low": low, "test_score_ci_high": high}, n_run_seeds)


def own_training(lb: pd.DataFrame, records: list[dict[str, Any]]) -> list[Table]:
    """The table of the rows whose ok runs report an own score, with their retrain's; none if no run does."""
    by_id = {r["run_id"]: r for r in records}
    keys = row_keys(lb)
    runs = {run_id: key for run_id, key, status in zip(lb.run_id, keys, lb.status)
            if status == "ok" and own_score(by_id[run_id]) is not None}
    if not runs:
        return []
    tasks = ordered_tasks(by_id[run_id]["task"] for run_id in runs)
    several, seeds = several_backbones(lb), lb.seed.nunique()
    rows = []
    for key in [k for k in ordered_keys(lb) if k in set(runs.values())]:
        mine = [by_id[run_id] for run_id, k in runs.items() if k == key]
        for what, score in (("own training", own_score), ("harness retrain", retrain_score)):
            rows.append([f"{method_label(key, several)}, {what}",
                         *[_cell([s for r in mine if r["task"] == t and (s := score(r)) is not None], seeds)
                           for t in tasks]])
    return [Table("Methods' own training (validation split)", ["Method", *[task_label(t) for t in tasks]], rows,
                  "l" + "r" * len(tasks), note=(
                      "Validation split, the selection metric ×100, mean over seeds with its 95 % interval. "
                      "own training: the model the method trained itself during its search (AdaLoRA: HF peft's "
                      "AdaLoRA with its rank schedule), scored on validation at the search's end; it never sees the "
                      "test split, so it has no cell in the tables above, and no mean, rank or comparison reads it. "
                      "harness retrain: the same runs' architecture retrained by the harness, scored on the same "
                      "validation split (its test score is the row's cell above)."))]
