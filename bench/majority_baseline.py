"""The majority-class baseline of a run's test splits, beside each method's mean score.

A table that says a method "learns" a task needs the score of predicting one class for every
example. This reads the run's per-example predictions (the gold labels of each seed's test split,
the same examples every method was scored on) and prints, per task, the score of always predicting
the split's most frequent gold label (an upper bound on the train-majority baseline) in the task's
selection metric (accuracy, F1, macro-F1, Matthews or a correlation, as the suite scores it) and in
every other metric the runs scored, beside the lowest and highest mean test score of the table's rows
(a method at a budget, from ``summary.csv``) and how many rows score above it:

    python bench/majority_baseline.py --out results/reference/minilm-cpu/report
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
from _common import bench_parser

from suite.tasks import TASKS
from suite.tasks.metrics import LABEL_METRICS


def constant_score(gold: list, metric: str, num_labels: int | None = None) -> float:
    """×100 score, in ``metric`` as the suite computes it (:data:`suite.tasks.metrics.LABEL_METRICS`), of
    predicting the most frequent label of ``gold`` for every example: accuracy its share p; binary
    F1 (MRPC, QQP) 2p/(1+p) when that label is the positive class 1, else 0; macro-F1 (CB) the majority
    class's F1 over the task's ``num_labels`` classes (default: those in ``gold``); Matthews correlation
    (CoLA) and the correlations (STS-B) 0, as for any constant predictor."""
    if metric not in LABEL_METRICS:
        raise ValueError(f"no constant baseline for metric {metric!r}; valid: {', '.join(LABEL_METRICS)}")
    majority = Counter(gold).most_common(1)[0][0]
    return LABEL_METRICS[metric]([majority] * len(gold), gold, num_labels or len(set(gold)))


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--out", required=True, help="a run's output folder")
    out = Path(parser.parse_args().out)
    golds: dict[tuple[str, int], list] = {}
    metrics: dict[str, str] = {}
    for path in sorted((out / "records").glob("*.json")):
        record = json.loads(path.read_text())
        preds = (record.get("files") or {}).get("predictions")
        if record["status"] != "ok" or not preds or (record["task"], record["seed"]) in golds:
            continue
        with gzip.open(out / preds["path"], "rt") as f:
            golds[record["task"], record["seed"]] = [json.loads(line)["gold"] for line in f]
        metrics[record["task"]] = record["metrics"]["selection"]
    summary = pd.read_csv(out / "summary.csv")
    # Besides each task's selection metric, every metric summary.csv has a mean of (MRPC's accuracy
    # beside its F1: a constant "paraphrase" scores F1 80 there but accuracy 67)
    scored = sorted(c[len("test_"):-len("_mean")] for c in summary.columns
                    if c.startswith("test_") and c.endswith("_mean") and c != "test_score_mean")
    rows = []
    for task, selection in sorted(metrics.items()):
        seeds = sorted(s for t, s in golds if t == task)
        labels = TASKS.get(task).num_labels if task in TASKS else None
        rows_of_task = summary[summary["task"] == task]
        for metric in [selection] + [m for m in scored if m != selection and m in LABEL_METRICS]:
            column = "test_score_mean" if metric == selection else f"test_{metric}_mean"
            scores = rows_of_task[rows_of_task[column].notna()]
            if scores.empty:
                continue
            majority = sum(constant_score(golds[task, s], metric, labels) for s in seeds) / len(seeds)
            worst = scores.loc[scores[column].idxmin()]
            budget = f" ≤{int(worst['budget_params']):,}" if pd.notna(worst["budget_params"]) else ""
            rows.append({"task": task, "metric": metric + (" (selection)" if metric == selection else ""),
                         "seeds": len(seeds), "majority class": round(majority, 1),
                         "rows above it": f"{(scores[column] > majority).sum()}/{len(scores)}",
                         "lowest row mean": f"{worst[column]:.1f} ({worst['method']}{budget})",
                         "highest row mean": f"{scores[column].max():.1f}"})
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))  # 22.0, not 22


if __name__ == "__main__":
    main()
