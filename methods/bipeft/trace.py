"""The per-step trace of a search: rows to the report callback, a CSV and a plot in ``out_dir``."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


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

    def save(self, out_dir: Path | str, stem: str, budget: int) -> dict[str, str]:
        """Write ``<stem>_trace.csv`` and ``<stem>_active_params.png``; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / f"{stem}_trace.csv"
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        with csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        plot_path = out / f"{stem}_active_params.png"
        self.plot(plot_path, budget)
        return {"trace_csv": str(csv_path), "trace_plot": str(plot_path)}

    def plot(self, path: Path, budget: int) -> None:
        """Active (trained) and expected parameters against the step, with the budget as a line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.rows]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, [r["active_params"] for r in self.rows], label="active parameters")
        expected = [r.get("expected_params", math.nan) for r in self.rows]
        if any(not math.isnan(e) for e in expected):
            ax.plot(steps, expected, label="expected parameters $E_t$", linestyle="--")
        ax.axhline(budget, color="grey", linewidth=0.8, label="budget $B$")
        triggers = [r["step"] for r in self.rows if r.get("triggered")]
        if triggers:
            ax.vlines(triggers, 0, 1, transform=ax.get_xaxis_transform(), color="tab:red", alpha=0.15,
                      linewidth=0.6, label="trigger")
        ax.set_xlabel("step")
        ax.set_ylabel("parameters")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
