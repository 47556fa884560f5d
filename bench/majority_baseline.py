"""The majority-class baseline of a run's test splits, beside each method's mean score.

A table that says a method "learns" a task needs the score of predicting one class for every
example. This reads the run's per-example predictions (the gold labels of each seed's test split,
the same examples every method was scored on) and prints, per task, the score of always predicting
the split's most frequent gold label (an upper bound on the train-majority baseline) in the task's
selection metric (accuracy, F1, macro-F1, Matthews or a correlation, as the suite scores it), and each
method's mean test score from ``summary.csv``:

    python bench/majority_baseline.py --out results/reference/minilm-cpu
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
from _common import bench_parser

from suite.tasks import TASKS


def constant_score(gold: list, metric: str, num_labels: int | None = None) -> float:
    """×100 score, in ``metric`` as the suite computes it (:data:`suite.tasks.metrics.LABEL_METRICS`), of
    predicting the most frequent label of ``gold`` for every example: accuracy its share p; binary
    F1 (MRPC, QQP) 2p/(1+p) when that label is the positive class 1, else 0; macro-F1 (CB) the majority
    class's F1 over the task's ``num_labels`` classes (default: those in ``gold``); Matthews correlation
    (CoLA) and the correlations (STS-B) 0, as for any constant predictor."""
    from suite.tasks.metrics import LABEL_METRICS

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
    rows = []
    for task, metric in sorted(metrics.items()):
        seeds = sorted(s for t, s in golds if t == task)
        labels = TASKS.get(task).num_labels if task in TASKS else None
        majority = sum(constant_score(golds[task, s], metric, labels) for s in seeds) / len(seeds)
        scores = summary[(summary["task"] == task) & summary["test_score_mean"].notna()]
        worst = scores.loc[scores["test_score_mean"].idxmin()]
        rows.append({"task": task, "metric": metric, "seeds": len(seeds), "majority class": round(majority, 1),
                     "lowest method mean": f"{worst['test_score_mean']:.1f} ({worst['method']})",
                     "highest method mean": f"{scores['test_score_mean'].max():.1f}"})
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
