"""The plots of a run: budget curves (the paper's Fig. 3), the accuracy-vs-parameters view, and the
critical-difference diagram of the ranks. One colour per method everywhere; PNGs without a timestamp,
so a rebuilt plot is the same file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from suite.report.aggregate import AVG, method_label, ordered_tasks, row_key, task_label
from suite.tasks import GROUPS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def several_budgets(lb: pd.DataFrame) -> bool:
    return lb[lb.status == "ok"].budget_params.dropna().nunique() > 1


def _title(task: str) -> str:
    return task_label(task) if task.split("/")[0] in GROUPS else task


def _log_ratio_axis(ax) -> None:
    from matplotlib import ticker

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)


def _save(axes, path: Path) -> None:
    fig = axes[0].figure
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize="small")
    fig.savefig(path, dpi=120, metadata={"Software": None})
    _pyplot().close(fig)


def _points(sm: pd.DataFrame) -> list[dict[str, Any]]:
    return sm[(sm.task != AVG) & sm.test_score_mean.notna()].to_dict("records")


def _interval(point: dict[str, Any]) -> tuple[float, float]:
    low, high = point.get("test_score_ci_low", math.nan), point.get("test_score_ci_high", math.nan)
    mean = point["test_score_mean"]
    return (mean, mean) if math.isnan(low) else (low, high)


def _panels(lb: pd.DataFrame, data: list[dict[str, Any]]):
    """One panel per task of the run, and a colour per (backbone, method, kind, setting, space) of ``data``."""
    tasks = ordered_tasks(lb.task)
    keys = list(dict.fromkeys(row_key(r)[:5] for r in data))
    colours = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    _, axes = _pyplot().subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 2.4, 3.8), squeeze=False,
                                 layout="constrained")
    return tasks, keys, colours, list(axes[0])


def budget_plot(lb: pd.DataFrame, sm: pd.DataFrame, path: Path) -> None:
    """Test score vs ratio ‱ (log x), one panel per task: a line per searched method over its budgets
    with its 95 % interval as a band, a point (with its interval) per manual baseline, full
    fine-tuning as a dashed level (as the paper's Figure 3)."""
    data = _points(sm)
    tasks, line_keys, colours, axes = _panels(lb, data)
    several = lb.backbone.nunique() > 1
    for ax, task in zip(axes, tasks):
        rows = [r for r in data if r["task"] == task]
        for line_key in line_keys:
            points = sorted((r for r in rows if row_key(r)[:5] == line_key), key=lambda r: r["ratio_permyriad_mean"])
            if not points:
                continue
            label = method_label((*line_key, None, None), several, budget=False)
            x = [p["ratio_permyriad_mean"] for p in points]
            y = [p["test_score_mean"] for p in points]
            low, high = zip(*(_interval(p) for p in points))
            if line_key[2] == "manual" and x[0] >= 1e4:  # full fine-tuning: a level, not a point far right
                ax.axhline(y[0], color=colours[line_key], linestyle="--", label=label)
                continue
            if line_key[2] == "manual":
                ax.errorbar(x, y, yerr=[[m - lo for m, lo in zip(y, low)], [hi - m for m, hi in zip(y, high)]],
                            color=colours[line_key], marker="o", capsize=3, linestyle="none", label=label)
            else:
                ax.plot(x, y, color=colours[line_key], marker="o", label=label)
                ax.fill_between(x, low, high, color=colours[line_key], alpha=0.18, linewidth=0)
        metric = rows[0]["selection_metric"] if rows else ""
        ax.set(xlabel="trainable PEFT / backbone parameters (×1e4)", ylabel=f"test {metric} (×100)", title=_title(task))
        _log_ratio_axis(ax)
    _save(axes, path)


def pareto_plot(lb: pd.DataFrame, sm: pd.DataFrame, path: Path) -> None:
    """Accuracy against trainable parameters, one point per method × budget (with its 95 % interval)
    and one panel per task: the Pareto view of the run."""
    data = [r for r in _points(sm) if r["ratio_permyriad_mean"] < 1e4]  # full fine-tuning: off this scale
    tasks, _, colours, axes = _panels(lb, data)
    several = lb.backbone.nunique() > 1
    for ax, task in zip(axes, tasks):
        rows = [r for r in data if r["task"] == task]
        for r in rows:
            key = row_key(r)
            low, high = _interval(r)
            ax.errorbar([r["ratio_permyriad_mean"]], [r["test_score_mean"]],
                        yerr=[[r["test_score_mean"] - low], [high - r["test_score_mean"]]], color=colours[key[:5]],
                        marker="s" if key[2] == "manual" else "o", capsize=3, linestyle="none",
                        label=method_label((*key[:5], None, None), several, budget=False))
        metric = rows[0]["selection_metric"] if rows else ""
        ax.set(xlabel="trainable PEFT / backbone parameters (×1e4)", ylabel=f"test {metric} (×100)", title=_title(task))
        _log_ratio_axis(ax)
    _save(axes, path)


def ranks_plot(ranks: dict[str, Any], path: Path) -> None:
    """The critical-difference diagram (scikit-posthocs) of the average ranks and Nemenyi p-values."""
    import scikit_posthocs as sp

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(ranks["average_rank"]) + 1.2), layout="constrained")
    sp.critical_difference_diagram(ranks["average_rank"], ranks["nemenyi"], ax=ax, label_fmt_left="{label} ({rank:.2f})",
                                   label_fmt_right="({rank:.2f}) {label}")
    f = ranks["friedman"]
    ax.set_title(f"average rank over {ranks['tasks']} tasks; Friedman p = {f['p']:.3g}; bars: Nemenyi p ≥ 0.05",
                 fontsize=9)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
