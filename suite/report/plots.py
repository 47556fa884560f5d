"""The plots of a run: budget curves (the paper's Fig. 3), the accuracy-vs-parameters view, the
critical-difference diagram of the ranks and the paired differences with their per-seed dots. PNGs
without a timestamp, so a rebuilt plot is the same file.

One colour and marker per method in every plot and every run (:func:`method_style`): by the
method's place among the registered method names, never by its place in a run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite.report.aggregate import (
    AVG,
    method_label,
    ordered_keys,
    ordered_tasks,
    row_key,
    row_labels,
    several_backbones,
    task_label,
)
from suite.tasks import GROUPS

# matplotlib's tab10, then the darkest shade of each tab20b group and five of ColorBrewer's Dark2: 20
# colours. Seven markers (7 and 20 share no factor) make colour and marker together differ for 140 methods.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#1b9e77", "#e6ab02", "#e7298a",
           "#66a61e", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Style:
    """How a plot draws a table row: its method's colour and marker; ``variant`` > 0 for a method's
    further rows in one run (another setting, space or backbone): a hollow marker, another line style."""

    colour: str
    marker: str
    variant: int = 0

    @property
    def face(self) -> str:
        return self.colour if self.variant == 0 else "white"

    @property
    def linestyle(self) -> str:
        return LINESTYLES[self.variant % len(LINESTYLES)]


def method_style(method: str, others: Iterable[str] = ()) -> Style:
    """The colour and marker of ``method``: by its place among the registered method names (sorted);
    a method not registered here comes after them, by its place among ``others`` (the run's other
    unregistered names)."""
    from methods import METHODS

    names = METHODS.names()
    index = names.index(method) if method in names else len(names) + sorted({*others, method} - set(names)).index(method)
    return Style(COLOURS[index % len(COLOURS)], MARKERS[index % len(MARKERS)])


def row_styles(keys: list[tuple]) -> dict[tuple, Style]:
    """The style of each ``row_key(...)[:5]`` of ``keys`` (a run's rows in table order): its method's,
    the method's second row in the run a variant, and so on."""
    methods = {k[1] for k in keys}
    styles: dict[tuple, Style] = {}
    for key in dict.fromkeys(k[:5] for k in keys):
        variant = sum(1 for k in styles if k[1] == key[1])
        base = method_style(key[1], methods)
        styles[key] = Style(base.colour, base.marker, variant)
    return styles


def label_styles(lb: pd.DataFrame) -> dict[str, Style]:
    """The style of each row label as the tables and ``comparison.csv`` print it (with its budget)."""
    labels = row_labels(lb)
    styles = row_styles(list(labels))
    return {label: styles[k[:5]] for k, label in labels.items()}


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
    """One panel per task of the run, the (backbone, method, kind, setting, space) of ``data`` and their styles."""
    tasks = ordered_tasks(lb.task)
    keys = list(dict.fromkeys(row_key(r)[:5] for r in data))
    _, axes = _pyplot().subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 2.4, 3.8), squeeze=False,
                                 layout="constrained")
    return tasks, keys, row_styles(ordered_keys(lb)), list(axes[0])


def budget_plot(lb: pd.DataFrame, sm: pd.DataFrame, path: Path) -> None:
    """Test score vs ratio ‱ (log x), one panel per task: a line per searched method over its budgets
    with its 95 % interval as a band, a point (with its interval) per manual baseline, full
    fine-tuning as a dashed level (as the paper's Figure 3)."""
    data = _points(sm)
    tasks, line_keys, styles, axes = _panels(lb, data)
    several = several_backbones(lb)
    for ax, task in zip(axes, tasks):
        rows = [r for r in data if r["task"] == task]
        for line_key in line_keys:
            points = sorted((r for r in rows if row_key(r)[:5] == line_key), key=lambda r: r["ratio_permyriad_mean"])
            if not points:
                continue
            label = method_label((*line_key, None, None), several, budget=False)
            style = styles[line_key]
            x = [p["ratio_permyriad_mean"] for p in points]
            y = [p["test_score_mean"] for p in points]
            low, high = zip(*(_interval(p) for p in points))
            if line_key[2] == "manual" and x[0] >= 1e4:  # full fine-tuning: a level, not a point far right
                ax.axhline(y[0], color=style.colour, linestyle="--", label=label)
                continue
            marks = {"color": style.colour, "marker": style.marker, "markerfacecolor": style.face, "label": label}
            if line_key[2] == "manual":
                ax.errorbar(x, y, yerr=[[m - lo for m, lo in zip(y, low)], [hi - m for m, hi in zip(y, high)]],
                            capsize=3, linestyle="none", **marks)
            else:
                ax.plot(x, y, linestyle=style.linestyle, **marks)
                ax.fill_between(x, low, high, color=style.colour, alpha=0.18, linewidth=0)
        metric = rows[0]["selection_metric"] if rows else ""
        ax.set(xlabel="trainable PEFT / backbone parameters (×1e4)", ylabel=f"test {metric} (×100)", title=_title(task))
        _log_ratio_axis(ax)
    _save(axes, path)


def pareto_plot(lb: pd.DataFrame, sm: pd.DataFrame, path: Path) -> None:
    """Accuracy against trainable parameters, one point per method × budget (with its 95 % interval)
    and one panel per task: the Pareto view of the run."""
    data = [r for r in _points(sm) if r["ratio_permyriad_mean"] < 1e4]  # full fine-tuning: off this scale
    tasks, _, styles, axes = _panels(lb, data)
    several = several_backbones(lb)
    for ax, task in zip(axes, tasks):
        rows = [r for r in data if r["task"] == task]
        for r in rows:
            key = row_key(r)
            low, high = _interval(r)
            style = styles[key[:5]]
            ax.errorbar([r["ratio_permyriad_mean"]], [r["test_score_mean"]],
                        yerr=[[r["test_score_mean"] - low], [high - r["test_score_mean"]]], color=style.colour,
                        marker=style.marker, markerfacecolor=style.face, capsize=3, linestyle="none",
                        label=method_label((*key[:5], None, None), several, budget=False))
        metric = rows[0]["selection_metric"] if rows else ""
        ax.set(xlabel="trainable PEFT / backbone parameters (×1e4)", ylabel=f"test {metric} (×100)", title=_title(task))
        _log_ratio_axis(ax)
    _save(axes, path)


def ranks_plot(ranks: dict[str, Any], path: Path, styles: dict[str, Style]) -> None:
    """The critical-difference diagram (scikit-posthocs) of the average ranks and Nemenyi p-values,
    each row in its style (``styles``: row label -> style, :func:`label_styles`)."""
    import scikit_posthocs as sp

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(ranks["average_rank"]) + 1.2), layout="constrained")
    average = ranks["average_rank"]
    sp.critical_difference_diagram(average, ranks["nemenyi"], ax=ax, label_fmt_left="{label} ({rank:.2f})",
                                   label_fmt_right="({rank:.2f}) {label}", marker_props={"s": 0},
                                   color_palette={label: styles[label].colour for label in average.index})
    for label, rank in average.items():  # the library draws one marker for all: each row's own instead
        style = styles[label]
        ax.scatter([rank], [0], marker=style.marker, color=style.colour, facecolors=style.face, zorder=4)
    f = ranks["friedman"]
    ax.set_title(f"average rank over {ranks['tasks']} tasks; Friedman p = {f['p']:.3g}; bars: Nemenyi p ≥ 0.05",
                 fontsize=9)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def comparison_plot(comparison: pd.DataFrame, path: Path, styles: dict[str, Style]) -> None:
    """The paired differences of ``comparison.csv`` (its compared rows), a panel per task: each row's
    mean difference (its marker) and 95 % interval (a line; "example noise only" under the label of
    an interval over test examples), the per-seed differences as dots beside it, and 0 dashed."""
    from matplotlib.lines import Line2D

    from suite.report.comparison import parse_seed_differences

    compared = comparison[comparison.note == ""]
    tasks = list(dict.fromkeys(compared.task))
    sizes = [int((compared.task == t).sum()) for t in tasks]
    plt = _pyplot()
    fig, axes = plt.subplots(len(tasks), 1, figsize=(8.5, 0.32 * sum(sizes) + 1.1 * len(tasks)), squeeze=False,
                             layout="constrained", height_ratios=[n + 2 for n in sizes])
    for ax, task in zip(axes[:, 0], tasks):
        rows = compared[compared.task == task]
        several_references = rows.reference.nunique() > 1
        labels = []
        for y, r in enumerate(rows.itertuples()):
            style = styles[r.method]
            ax.plot([r.ci_low, r.ci_high], [y, y], color=style.colour, linestyle=style.linestyle, linewidth=2)
            ax.scatter([r.difference], [y], marker=style.marker, color=style.colour, facecolors=style.face,
                       s=50, zorder=3)
            per_seed = list(parse_seed_differences(r.seed_differences).values())
            ax.scatter(per_seed, [y + 0.22] * len(per_seed), color="black", s=10, zorder=4)
            label = f"{r.method} vs {r.reference}" if several_references else r.method
            labels.append(label + ("\n(example noise only)" if r.ci_over == "examples" else ""))
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(labels)), labels, fontsize="small")
        ax.set_ylim(len(labels) - 0.5, -0.7)
        reference = "" if several_references else f" − {rows.reference.iloc[0]}"
        ax.set(title=f"{_title(task)}: method{reference}", xlabel=f"difference in test {_metric_name(task)} (×100)")
        ax.grid(True, axis="x", alpha=0.3)
    fig.legend(handles=[Line2D([], [], color="grey", marker="o", linewidth=2, label="mean and 95 % interval"),
                        Line2D([], [], color="black", marker="o", markersize=3, linestyle="none",
                               label="per-seed differences")], loc="outside lower center", ncols=2, fontsize="small")
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def _metric_name(task: str) -> str:
    from suite.tasks import TASKS

    return TASKS.get(task).selection_metric if task in TASKS else "score"


def placements_plot(matrices: dict[str, pd.DataFrame], styles: dict[str, Style], path: Path) -> None:
    """A heat map per table row (``matrices``: row label -> layer × op type shares in %, as
    :mod:`suite.report.choices` computes them), shaded from white to the row's method colour
    (``styles``: row label -> style) and each cell's share printed in it."""
    from matplotlib.colors import LinearSegmentedColormap

    plt = _pyplot()
    n = len(matrices)
    columns = min(n, 4)
    rows = -(-n // columns)
    n_layers, n_ops = next(iter(matrices.values())).shape  # every row's table has the run's layers and op types
    fig, axes = plt.subplots(rows, columns, squeeze=False, layout="constrained",
                             figsize=(columns * (1.4 + 0.55 * n_ops), rows * (1.6 + 0.28 * n_layers)))
    for ax, (label, matrix) in zip(axes.flat, matrices.items()):
        style = styles[label]
        shares = matrix.to_numpy()
        largest = max(float(shares.max()), 1e-9)
        cmap = LinearSegmentedColormap.from_list(label, ["white", style.colour])
        ax.imshow(shares, cmap=cmap, vmin=0, vmax=largest, aspect="auto")
        for (i, j), value in np.ndenumerate(shares):
            if value >= 0.05:  # what prints as 0.1 or more
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.6 * largest else "black")
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=45, ha="right", fontsize="small")
        ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize="small")
        ax.set_title(label, color=style.colour, fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("% of the kept parameters per layer and op type (mean over seeds, then tasks)", fontsize=9)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
