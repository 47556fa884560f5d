"""``comparison.md`` / ``comparison.csv``: each method against a reference, per task, and ranks over tasks.

For each task and each table row other than the reference's, the paired difference (row minus
reference) of the selection metric on the same test examples and seeds, its per-seed differences,
its 95 % interval (over seeds; over test examples with one seed or ``interval="examples"``:
:func:`suite.report.stats.paired_difference`) and win / tie / loss (tie: the interval contains 0).
A row with a budget is compared with the reference at the same budget (else the reference's first
budget); manual baselines with the reference at each of its budgets. Then, over the tasks every row
has, the average rank per row, the Friedman test and the Nemenyi post-hoc test
(:func:`suite.report.stats.rank_test`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from suite.report import stats
from suite.report.aggregate import (
    AVG,
    method_label,
    ordered_keys,
    ordered_tasks,
    row_key,
    row_keys,
    several_backbones,
    task_label,
)
from suite.report.tables import Document, Table, num
from suite.tasks import TASKS


def reference_keys(keys: list[tuple], reference: str) -> dict[int | None, tuple]:
    """The reference method's table row per budget (``None``: its first, for rows without a budget)."""
    own = [k for k in keys if k[1] == reference and not k[3]]  # as published, with the suite's recipe
    own = own or [k for k in keys if k[1] == reference]
    if not own:
        valid = ", ".join(sorted({k[1] for k in keys}))
        raise ValueError(f"--reference {reference!r} is not a method of this run; valid: {valid}")
    out: dict[int | None, tuple] = {None: own[0]}
    for k in own:
        out.setdefault(k[6], k)
    return out


COLUMNS = ["task", "method", "reference", "seeds", "examples", "difference", "ci_low", "ci_high", "ci_over",
           "outcome", "seed_differences", "note"]


def seed_differences(per_seed: dict[int, float]) -> str:
    """``0:0.6 1:5.2 2:1.6``: each seed and its difference (``comparison.csv``'s ``seed_differences``)."""
    return " ".join(f"{s}:{d:.6g}" for s, d in per_seed.items())


def parse_seed_differences(text: str) -> dict[int, float]:
    """The inverse of :func:`seed_differences`."""
    return {int(s): float(d) for s, d in (pair.split(":") for pair in text.split())}


def compare(lb: pd.DataFrame, predictions: dict[str, list], reference: str, interval: str = "seeds") -> pd.DataFrame:
    """One row per task × table row: the paired difference against ``reference`` and its outcome.

    ``interval``: ``seeds`` (a t-interval over the per-seed differences where two or more seeds ran)
    or ``examples`` (the bootstrap over test examples with the seeds held fixed, for every cell)."""
    ok = lb[lb.status == "ok"]
    keys = ordered_keys(lb)
    refs = reference_keys(keys, reference)
    runs: dict[tuple, dict[int, list]] = {}
    for index, key in row_keys(ok).items():
        run_id = ok.at[index, "run_id"]
        if run_id in predictions:
            runs.setdefault((key, ok.at[index, "task"]), {})[int(ok.at[index, "seed"])] = predictions[run_id]
    several = several_backbones(lb)
    rows = []
    for task in ordered_tasks(lb.task):
        for key in keys:
            if key[2] == "manual":  # no budget of its own: against the reference at each of its budgets
                targets = list(dict.fromkeys(v for b, v in refs.items() if b is not None)) or [refs[None]]
            else:
                targets = [refs.get(key[6], refs[None])]
            for ref in targets:
                if key == ref or (key, task) not in runs or (ref, task) not in runs:
                    continue
                row = {"task": task, "method": method_label(key, several), "reference": method_label(ref, several)}
                try:
                    result = stats.paired_difference(TASKS.get(task), runs[key, task], runs[ref, task], interval)
                except ValueError as e:
                    rows.append({**row, "note": str(e)})
                    continue
                rows.append({**row, "seeds": len(result["seeds"]), "examples": result["examples"],
                             "difference": result["difference"], "ci_low": result["low"], "ci_high": result["high"],
                             "ci_over": result["over"], "outcome": stats.outcome(result["low"], result["high"]),
                             "seed_differences": seed_differences(result["per_seed"]), "note": ""})
    return pd.DataFrame(rows, columns=COLUMNS)


def rank_scores(lb: pd.DataFrame, sm: pd.DataFrame) -> pd.DataFrame:
    """Tasks × table rows of mean test scores, for the rows scored on every task of the run."""
    several = several_backbones(lb)
    tasks = ordered_tasks(lb.task)
    cells = sm[(sm.task != AVG)].dropna(subset=["test_score_mean"])
    table = {}
    for key in ordered_keys(lb):
        scores = {r["task"]: r["test_score_mean"] for r in cells.to_dict("records") if row_key(r) == key}
        if all(t in scores for t in tasks):
            table[method_label(key, several)] = [scores[t] for t in tasks]
    return pd.DataFrame(table, index=[task_label(t) for t in tasks])


def _cells(r) -> list[str]:
    """Seeds, difference, per-seed differences, interval and outcome of a comparison row."""
    if r.note != "":
        return ["–", "–", "–", "–", r.note]
    per_seed = " / ".join(f"{d:+.2f}" for d in parse_seed_differences(r.seed_differences).values())
    outcome = r.outcome
    if r.ci_over == "examples":  # the seeds held fixed: say so in the cell a reader takes the verdict from
        outcome += " (one seed: example noise only)" if r.seeds == 1 else " (example noise only)"
    interval = "[–]" if r.ci_over == stats.TOO_FEW else f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
    return [str(int(r.seeds)), num(r.difference), per_seed, interval, outcome]


def interval_note(comparison: pd.DataFrame, interval: str) -> str:
    """What the intervals of ``comparison`` are, as the footnote says it."""
    given = set(comparison.get("ci_over", pd.Series(dtype=str)).dropna())
    over = {"examples" if o == stats.TOO_FEW else o for o in given}  # the bootstrap it would have been
    resamples = f"({stats.RESAMPLES} resamples, seeded)"
    if interval == "examples":
        return (f"95 % interval: a percentile bootstrap of that mean that resamples each seed's test examples "
                f"{resamples} with the seeds held fixed, so it measures example noise only (`table "
                "--paired-interval examples`; the default, a t-interval over the per-seed differences, also "
                "counts the training seeds' noise). ")
    parts = []
    if "seeds" in over or not over:
        parts.append("with two or more seeds, the t-interval (n − 1 degrees of freedom) over the per-seed "
                     "differences: the training seed is the unit of replication, and each per-seed difference "
                     "carries its test examples' noise")
    if "examples" in over:
        parts.append(f"with one seed, a percentile bootstrap over its test examples {resamples}, which measures "
                     "example noise only (marked \"one seed: example noise only\")")
    too_few = ("`[–]` and outcome –: no interval, a seed's test split has a single example. "
               if stats.TOO_FEW in given else "")
    return ("95 % interval: " + "; ".join(parts) + ". `table --paired-interval examples` gives the example "
            "bootstrap for every cell (example noise only, the seeds held fixed). " + too_few)


def comparison_document(comparison: pd.DataFrame, ranks: dict[str, Any], reference: str,
                        interval: str = "seeds") -> Document:
    doc = Document("Comparison (paired, on the same test examples and seeds)")
    for task, group in comparison.groupby("task", sort=False):
        rows = [[r.method, r.reference, *_cells(r)] for r in group.itertuples()]
        doc.tables.append(Table(task_label(task), ["Method", "Reference", "Seeds", "Difference", "Per seed",
                                                   "95 % interval", "Outcome"], rows, "llrrrrl"))
    if comparison.empty:
        doc.notes += ["No pair of runs to compare (no predictions, or one method only).", ""]
    else:
        tally = (comparison[comparison.note == ""].groupby(["method", "reference"], sort=False).outcome
                 .value_counts().unstack(fill_value=0).reindex(columns=["win", "tie", "loss"], fill_value=0))
        doc.tables.append(Table("Win / tie / loss against the reference, over tasks",
                                ["Method", "Reference", "Win", "Tie", "Loss"],
                                [[m, ref, str(r.win), str(r.tie), str(r.loss)] for (m, ref), r in tally.iterrows()],
                                "llrrr"))
    note = ranks["note"]
    if ranks["friedman"] is not None:
        f, nemenyi = ranks["friedman"], ranks["nemenyi"]
        pairs = [f"{a} vs {b} (p = {nemenyi.at[a, b]:.3g})" for i, a in enumerate(nemenyi.index)
                 for b in nemenyi.index[i + 1:] if nemenyi.at[a, b] < 0.05]
        note = (f"Friedman test over {ranks['tasks']} tasks: χ² = {f['statistic']:.2f}, p = {f['p']:.3g}. "
                f"Nemenyi post-hoc pairs with p < 0.05: {'; '.join(pairs) or 'none'}. "
                "The critical-difference diagram is ranks.png.")
    doc.tables.append(Table("Ranks over tasks", ["Method", "Average rank"],
                            [[m, f"{v:.2f}"] for m, v in ranks["average_rank"].items()], "lr", note=note))
    doc.notes += [
        f"Difference: method minus reference ({reference}) in the task's selection metric ×100, mean over the "
        "seeds both ran; Per seed: each seed's difference, in seed order. " + interval_note(comparison, interval)
        + "Outcome: win / loss when the interval excludes 0, tie when it contains 0. Ranks: 1 = best mean score "
        "on a task, averaged over the tasks every row ran."]
    return doc
