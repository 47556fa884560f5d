"""Tables and plots computed from the run records, never written by hand.

:func:`write_reports` reads ``<out>/records/*.json`` (:mod:`suite.records`) and writes into ``<out>``:

* ``leaderboard.csv``: one row per record, failed ones included with their error.
* ``summary.csv``: mean and sample standard deviation (n − 1) over seeds per backbone × method ×
  space × budget × task, and an ``AVG`` row over the run's tasks per backbone × method × space ×
  budget (its score only when the method has an ok run on every task of the run; ``note`` says why not).
* ``accuracy.md``: the layout of the BIPEFT paper's Table 1 (Ratio | Method | tasks | AVG), one
  block per benchmark, GLUE and SuperGLUE tasks in the paper's column order.
* ``efficiency.md``: the layout of the paper's Table 3 (Setting | Method | Search | Re-train | Ratio),
  plus peak memory.
* ``budget.png``: test score against the parameter ratio (log x), one panel per task; only when the
  run has several budgets.

Failed records are listed in the leaderboard and counted in every table, never averaged. Metrics
are the records' (already ×100); ratios are trainable PEFT parameters / backbone parameters in ‱
(×1e4); times are minutes. ``results/README.md`` documents every column.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from suite.records import record_files, validate_dir
from suite.tasks import BENCHMARK_TITLES, GROUPS, TASKS

KIND_ORDER = {"manual": 0, "one-shot": 1, "black-box": 1}
KEY = ["backbone", "method", "method_kind", "space", "budget_fraction", "budget_params"]  # one table row
AVG = "AVG"
LEADERBOARD_FORMAT = "%.10g"
SUMMARY_FORMAT = "%.6g"


# ---- leaderboard ------------------------------------------------------------------------------------
def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def _hardware(record: dict[str, Any]) -> str | None:
    hardware = record.get("environment", {}).get("hardware", {})
    return hardware.get("gpu") or hardware.get("cpu")


def leaderboard(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record (see ``results/README.md``), in the order given (by run id from disk)."""
    records = list(records)
    metrics = sorted({m for r in records for split in ("validation", "test") for m in r["metrics"][split]})
    rows = []
    for r in records:
        params, time, scores = r["params"], r["time"], r["metrics"]
        row = {
            "run_id": r["run_id"], "status": r["status"], "error": r.get("error"),
            "method": r["method"], "method_kind": r["method_kind"], "space": r["space"], "task": r["task"],
            "seed": r["seed"], "backbone": r["backbone"], "backbone_params": r.get("backbone_params"),
            "budget_fraction": r["budget"]["fraction"], "budget_params": r["budget"]["params"],
            "peft_params": params.get("peft"), "head_params": params.get("head"),
            "ratio_permyriad": params.get("permyriad"), "selection_metric": scores["selection"],
        }
        row |= {f"val_{m}": scores["validation"].get(m) for m in metrics}
        row |= {f"test_{m}": scores["test"].get(m) for m in metrics}
        row |= {
            "test_score": scores["test"].get(scores["selection"]),
            "search_min": _minutes(time.get("search_s")), "retrain_min": _minutes(time.get("retrain_s")),
            "peak_memory_mb": (r.get("retrain") or {}).get("peak_memory_mb"),
            "search_peak_memory_mb": (r.get("search") or {}).get("peak_memory_mb"),
            "hardware": _hardware(r), "digest": r.get("architecture_digest"),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def metric_names(lb: pd.DataFrame) -> list[str]:
    """The metric names of the leaderboard's ``test_<metric>`` columns."""
    return [c[len("test_"):] for c in lb.columns if c.startswith("test_") and c != "test_score"]


# ---- grouping and order -----------------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_key(row: pd.Series | dict[str, Any]) -> tuple:
    """``(backbone, method, method_kind, space, budget_fraction, budget_params)``, None for no budget:
    one row of the tables."""
    fraction, params = row["budget_fraction"], row["budget_params"]
    return (row["backbone"], row["method"], row["method_kind"], row["space"],
            None if _missing(fraction) else float(fraction), None if _missing(params) else int(params))


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
        backbone, method, kind, space, _, budget = key
        r = ratio.get(key, math.nan)
        manual_rank = -r if kind == "manual" and not math.isnan(r) else 0.0
        return (backbone, KIND_ORDER[kind], manual_rank, space, budget or 0, method)

    return sorted(set(row_keys(lb)), key=order)


def method_label(key: tuple, several_backbones: bool = False, budget: bool = True, space: bool = True) -> str:
    """``LoRA(r=8)`` for a manual baseline; ``BIPEFT (S2, ≤1.39‱)`` for a searched method (its
    space and budget, each optional)."""
    backbone, method, kind, space_name, fraction, params = key
    label = method_name_label(method)
    if kind != "manual":
        parts = [space_name.upper()] if space else []
        if budget and (fraction is not None or params is not None):
            parts.append(f"≤{fraction * 1e4:.2f}‱" if fraction is not None else f"≤{params:,} params")
        label += f" ({', '.join(parts)})" if parts else ""
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


def summary(lb: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per table row × task, then an AVG row per table row."""
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
            for m in metrics:
                row[f"test_{m}_mean"], row[f"test_{m}_std"] = _mean_std(ok[f"test_{m}"])
            for col in ("ratio_permyriad", "search_min", "retrain_min", "peak_memory_mb"):
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
    for col in ("ratio_permyriad", "search_min", "retrain_min", "peak_memory_mb"):
        values = [r[f"{col}_mean"] for r in scored if not math.isnan(r[f"{col}_mean"])]
        row[f"{col}_mean"] = statistics.fmean(values) if values else math.nan
    row["n_tasks"] = len(scored)
    row["note"] = f"no AVG: no ok run on {', '.join(missing)}" if missing else f"mean over {len(scored)} tasks"
    return row


# ---- Markdown ---------------------------------------------------------------------------------------
def markdown_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A pipe table (pandas' ``to_markdown``, i.e. tabulate); ``align`` has one ``l`` or ``r`` per column.
    Cells are text already, so tabulate's number parsing is off."""
    table = pd.DataFrame(rows, columns=header)
    colalign = ["right" if a == "r" else "left" for a in align]
    return table.to_markdown(index=False, tablefmt="pipe", colalign=colalign, disable_numparse=True) + "\n"


def _cell(row: dict[str, Any] | None, n_run_seeds: int) -> str:
    if row is None:
        return ""
    mean, std, n, failed = row["test_score_mean"], row["test_score_std"], int(row["n_seeds"]), row["n_failed"]
    text = "–" if math.isnan(mean) else f"{mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")
    if failed:
        text += f" (n={n}, {failed} failed)"
    elif n < n_run_seeds:
        text += f" (n={n})"
    return text


def _failed_lines(lb: pd.DataFrame) -> list[str]:
    failed = lb[lb.status == "failed"]
    if failed.empty:
        return [f"Runs: {len(lb)}, none failed."]
    lines = [f"Runs: {len(lb)}, {len(failed)} failed (excluded from every mean):"]
    lines += [f"- `{r.run_id}`: {r.error}" for r in failed.itertuples()]
    return lines


def accuracy_markdown(lb: pd.DataFrame, sm: pd.DataFrame) -> str:
    """The paper's Table 1: per benchmark, Ratio | Method | tasks | AVG; manual baselines first."""
    cells = {(row_key(r), r["task"]): r for r in sm.to_dict("records")}
    keys = ordered_keys(lb)
    several = lb.backbone.nunique() > 1
    seeds = sorted(lb.seed.unique())
    out = ["# Accuracy (test split)", ""]
    for title, tasks in task_blocks(lb.task):
        header = ["Ratio", "Method", *[task_label(t) for t in tasks], "AVG"]
        rows, section = [], None
        for key in keys:
            task_rows = [cells.get((key, t)) for t in tasks]
            if all(r is None for r in task_rows):
                continue
            kind = "Manual PEFT methods" if key[2] == "manual" else "Automated PEFT methods"
            if kind != section:
                rows.append(["", f"**{kind}**", *[""] * (len(tasks) + 1)])
                section = kind
            scored = [r for r in task_rows if r is not None and r["n_seeds"] > 0]
            ratio = [r["ratio_permyriad_mean"] for r in scored]
            ratio_text = f"{statistics.fmean(ratio):.2f}‱" if ratio else "–"
            complete = len(scored) == len(tasks)
            avg = f"{statistics.fmean(r['test_score_mean'] for r in scored):.2f}" if complete else "–"
            rows.append([ratio_text, method_label(key, several), *[_cell(r, len(seeds)) for r in task_rows], avg])
        out += [f"## {title}", "", markdown_table(header, rows, "rl" + "r" * (len(tasks) + 1))]
    metric_text = ", ".join(f"{task_label(t) if t.split('/')[0] in GROUPS else t} {m}" for t, m in
                            lb.groupby("task").selection_metric.first().reindex(ordered_tasks(lb.task)).items())
    backbones = ", ".join(f"{b} ({int(n):,} parameters)" for b, n in
                          lb.groupby("backbone").backbone_params.max().dropna().items())
    out += [
        f"Cells: the test-split selection metric ×100 ({metric_text}), mean ± sample standard deviation "
        f"(n − 1) over {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(str(s) for s in seeds)}); "
        "`(n=k)` marks a cell with "
        "fewer ok runs, – a cell whose runs all failed, a blank one a task the row did not run. "
        "AVG: mean of a row's cells, only when it has every task of the block (– otherwise).",
        f"Ratio: trainable PEFT parameters / backbone parameters in ‱ (×1e4), mean over the row's tasks; "
        f"task heads are not counted. Backbone: {backbones}. `≤b` is a searched method's budget{_budgets(lb)}.",
        "",
        *_failed_lines(lb),
        "",
    ]
    return "\n".join(out)


def _budgets(lb: pd.DataFrame) -> str:
    """``: 1.39‱ = 3,157 parameters, …`` for the run's budgets (reports show both forms)."""
    budgets = sorted({(k[4], k[5]) for k in row_keys(lb) if k[4] is not None and k[5] is not None})
    return (": " + ", ".join(f"{f * 1e4:.2f}‱ = {n:,} parameters" for f, n in budgets)) if budgets else ""


def efficiency_markdown(lb: pd.DataFrame, sm: pd.DataFrame) -> str:
    """The paper's Table 3: per space × searched method, average search and re-train minutes and
    their ratio (the summary's AVG row: seeds averaged per task, then the row's tasks), plus peaks."""
    run_tasks = ordered_tasks(lb.task)
    several = lb.backbone.nunique() > 1
    averages = {row_key(r): r for r in sm[sm.task == AVG].to_dict("records")}
    header = ["Setting", "Method", "Search (min)", "Re-train (min)", "Ratio", "Search peak (MB)",
              "Re-train peak (MB)", "Tasks", "Runs"]
    rows, keys = [], row_keys(lb)
    for key in ordered_keys(lb):
        if key[2] == "manual":
            continue
        runs = lb[keys.map(lambda k, key=key: k == key)]
        ok = runs[runs.status == "ok"]
        avg = averages[key]
        search, retrain = avg["search_min_mean"], avg["retrain_min_mean"]
        ratio = search / retrain if retrain else math.nan
        n_failed = len(runs) - len(ok)
        rows.append([key[3].upper(), method_label(key, several, space=False), _num(search), _num(retrain),
                     _num(ratio), _num(ok.search_peak_memory_mb.max(), 0), _num(ok.peak_memory_mb.max(), 0),
                     f"{int(avg['n_tasks'])}/{len(run_tasks)}", f"{len(ok)} ok" + (f", {n_failed} failed" if n_failed else "")])
    hardware = sorted(lb.hardware.dropna().unique())
    hardware_text = (f"every run on {hardware[0]}" if len(hardware) == 1 else
                     f"runs on different hardware ({', '.join(hardware)}): times are not comparable")
    out = ["# Efficiency (search vs re-train time)", ""]
    out += [markdown_table(header, rows, "llrrrrrrr") if rows else "No searched method in this run.\n"]
    out += [
        f"Minutes averaged over the ok runs (seeds) of each task, then over the row's tasks "
        f"(of {', '.join(run_tasks)}); Ratio = Search / Re-train of these averages, as the paper's Table 3. "
        "Peaks: the largest over the row's ok runs (GPU memory allocated on a GPU, resident set on a CPU). "
        f"Manual baselines do not search and are left out. Hardware: {hardware_text}.",
        "",
        *_failed_lines(lb),
        "",
    ]
    return "\n".join(out)


def _num(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


# ---- plot -------------------------------------------------------------------------------------------
def several_budgets(lb: pd.DataFrame) -> bool:
    return lb[lb.status == "ok"].budget_params.dropna().nunique() > 1


def budget_plot(lb: pd.DataFrame, sm: pd.DataFrame, path: Path) -> None:
    """Test score vs ratio ‱ (log x), one panel per task: a line per searched method over its
    budgets, a point per manual baseline, full fine-tuning as a dashed level (as the paper's
    Figure 3); error bars are the standard deviation over seeds. One colour per method everywhere."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    tasks = ordered_tasks(lb.task)
    data = sm[(sm.task != AVG) & sm.test_score_mean.notna()].to_dict("records")
    several = lb.backbone.nunique() > 1
    line_keys = list(dict.fromkeys(row_key(r)[:4] for r in data))  # (backbone, method, kind, space)
    colours = {k: f"C{i % 10}" for i, k in enumerate(line_keys)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 2.4, 3.8), squeeze=False,
                             layout="constrained")
    for ax, task in zip(axes[0], tasks):
        rows = [r for r in data if r["task"] == task]
        for line_key in line_keys:
            points = sorted((r for r in rows if row_key(r)[:4] == line_key), key=lambda r: r["ratio_permyriad_mean"])
            if not points:
                continue
            label = method_label((*line_key, None, None), several, budget=False)
            x = [p["ratio_permyriad_mean"] for p in points]
            y = [p["test_score_mean"] for p in points]
            err = [0.0 if math.isnan(p["test_score_std"]) else p["test_score_std"] for p in points]
            if line_key[2] == "manual" and x[0] >= 1e4:  # full fine-tuning: a level, not a point far right
                ax.axhline(y[0], color=colours[line_key], linestyle="--", label=label)
                continue
            ax.errorbar(x, y, yerr=err, color=colours[line_key], marker="o", capsize=3, label=label,
                        linestyle="none" if line_key[2] == "manual" else "-")
        metric = rows[0]["selection_metric"] if rows else ""
        ax.set(xscale="log", xlabel="trainable PEFT / backbone parameters (×1e4)", ylabel=f"test {metric} (×100)",
               title=task_label(task) if task.split("/")[0] in GROUPS else task)
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize="small")
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


# ---- entry point ------------------------------------------------------------------------------------
def write_reports(out_dir: Path | str) -> list[Path]:
    """Rebuild every table and plot of the run in ``out_dir`` from its records.

    Returns:
        The paths written. ``budget.png`` only when the run has several budgets (a stale one is
        removed otherwise).

    Raises:
        FileNotFoundError: ``out_dir`` holds no run (no records).
        ValueError: some record is invalid (``python -m suite validate`` lists them all).
    """
    out = Path(out_dir)
    files = record_files(out)
    problems = validate_dir(out)
    if problems:
        raise ValueError(f"{len(problems)} invalid record(s) in {out}, e.g. {problems[0]}; "
                         f"`python -m suite validate --out {out}` lists them")
    records = [json.loads(p.read_text()) for p in files]
    lb = leaderboard(records)
    sm = summary(lb)
    written = []

    def write_text(name: str, text: str) -> None:
        path = out / name
        path.write_text(text)
        written.append(path)

    write_text("leaderboard.csv", lb.to_csv(index=False, float_format=LEADERBOARD_FORMAT, lineterminator="\n"))
    write_text("summary.csv", sm.to_csv(index=False, float_format=SUMMARY_FORMAT, lineterminator="\n"))
    write_text("accuracy.md", accuracy_markdown(lb, sm))
    write_text("efficiency.md", efficiency_markdown(lb, sm))
    plot = out / "budget.png"
    if several_budgets(lb):
        budget_plot(lb, sm, plot)
        written.append(plot)
    else:
        plot.unlink(missing_ok=True)
    return written
