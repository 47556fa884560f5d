"""The per-step trace of a one-shot search: rows to the report callback, a CSV and a plot.

Every one-shot method keeps one (BIPEFT per step, S3Delta per validation, PrunePEFT per pruning
round), so that a run's ``traces/<run_id>/`` folder reads the same whatever searched; a search
with sparse rows also calls :func:`report_progress` every few steps, for the live view:

    trace = Trace(ctx.report, report_every=10)
    trace.add({"step": 1, "loss": 0.69, "active_params": 9_000})
    files = trace.save(ctx.out_dir, "bipeft", plot=TracePlot(("active_params",), budget=ctx.budget))

:meth:`Trace.save` returns the file names relative to the folder it wrote to, which is what a record
keeps (never a path of the machine the run happened on).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRESS_EVERY = 10  # steps between two progress reports of a search whose trace rows are sparse


def report_progress(report: Callable[[dict[str, Any]], None], step: int, total: int, every: int = PROGRESS_EVERY,
                    **values: Any) -> None:
    """Send ``{"step", "total", **values}`` to ``report`` every ``every`` steps and at the last one.

    For the live view (``suite.progress``) of a search whose trace has few rows (S3Delta's, one per
    validation; PrunePEFT's, one per pruning round): without it the trial shows no step until its
    first row, which may be its last. Nothing is added to the trace.
    """
    if step % every == 0 or step == total:
        report({"step": step, "total": total, **values})


@dataclass(frozen=True)
class TracePlot:
    """What :meth:`Trace.save` plots: ``columns`` against ``x``, a budget line, event marks.

    Args:
        columns: the row keys drawn as lines (missing or NaN values are skipped).
        labels: a legend label per column (default: the column name).
        budget: a horizontal line at this value ("budget B"), or None.
        marks: a 0/1 row key whose 1s are drawn as faint vertical lines (e.g. BIPEFT's triggers).
        x: the row key on the x axis.
        log: a log y axis.
    """

    columns: tuple[str, ...]
    labels: tuple[str, ...] = ()
    budget: float | None = None
    marks: str | None = None
    x: str = "step"
    log: bool = True
    ylabel: str = "parameters"


class Trace:
    """Collects one row per step; forwards every ``report_every``-th row to ``report``.

    Args:
        report: the context's callback (Ray's ``tune.report`` inside a trial).
        report_every: forward every N-th row (the CSV keeps them all).
    """

    def __init__(self, report: Callable[[dict[str, Any]], None], report_every: int = 1):
        self.report, self.report_every = report, report_every
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any], force_report: bool = False) -> None:
        self.rows.append(row)
        if force_report or len(self.rows) % self.report_every == 0:
            self.report(dict(row))

    def save(self, out_dir: Path | str | None, stem: str, plot: TracePlot | None = None) -> dict[str, str]:
        """Write ``<stem>_trace.csv`` (and ``<stem>_trace.png`` with ``plot``) into ``out_dir``.

        Returns ``{"trace_csv": name, "trace_plot": name}`` with names relative to ``out_dir``;
        nothing (and ``{}``) when ``out_dir`` is None.
        """
        if out_dir is None:
            return {}
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        csv_name = f"{stem}_trace.csv"
        with (out / csv_name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        files = {"trace_csv": csv_name}
        if plot is not None and self.rows:
            plot_name = f"{stem}_trace.png"
            self._plot(out / plot_name, plot)
            files["trace_plot"] = plot_name
        return files

    def _plot(self, path: Path, spec: TracePlot) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = spec.labels or spec.columns
        for column, label in zip(spec.columns, labels):
            points = [(r[spec.x], r[column]) for r in self.rows
                      if isinstance(r.get(column), (int, float)) and not math.isnan(r[column])]
            if points:
                ax.plot(*zip(*points), label=label)
        if spec.budget is not None:
            ax.axhline(spec.budget, color="grey", linewidth=0.8, label="budget $B$")
        marks = [r[spec.x] for r in self.rows if spec.marks and r.get(spec.marks)]
        if marks:
            ax.vlines(marks, 0, 1, transform=ax.get_xaxis_transform(), color="tab:red", alpha=0.15,
                      linewidth=0.6, label=spec.marks)
        ax.set_xlabel(spec.x)
        ax.set_ylabel(spec.ylabel)
        if spec.log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120, metadata={"Software": None})
        plt.close(fig)
