"""Tables, statistics and plots computed from a run's records, never written by hand.

:func:`write_reports` reads ``<out>/records/*.json`` (:mod:`suite.records`) and the per-example test
predictions beside them, and writes into ``<out>``:

* ``leaderboard.csv``: one row per record, failed ones included with their error.
* ``summary.csv``: per table row × task the mean, sample standard deviation and a 95 % interval
  over seeds (over test examples with one seed), and an ``AVG`` row over the run's tasks.
* ``accuracy.md``: the layout of the BIPEFT paper's Table 1, each cell with its interval; a method's
  own training score (AdaLoRA's), on validation, in a table of its own (:mod:`~suite.report.own`).
* ``efficiency.md``: the layout of the paper's Table 3 (search wall-clock and compute, re-train,
  their ratio, peaks), and what each search delivered.
* ``comparison.md`` / ``comparison.csv``: each method against a reference, paired on the same
  test examples and seeds, with its per-seed differences and a seed-aware interval; win / tie / loss;
  ranks, Friedman and Nemenyi tests over tasks.
* ``comparison.png`` (the paired differences, their intervals and per-seed dots, when a pair ran),
  ``ranks.png`` (critical-difference diagram, when the rank test applies), ``pareto.png``
  (accuracy vs parameters), ``budget.png`` (metric vs ratio, when several budgets ran); one colour
  and marker per method in all of them.
* ``architectures.md`` and ``placements.png``: what each searched method chose, its parameters by op
  type and by layer (mean over seeds, per task and over all tasks), and a heat map of layer × op type
  per row (:mod:`~suite.report.choices`); when the run has a searched row.
* ``reported.md`` (``reported="paper"``, a run on T5-large only): the seed paper's own Table 1 and
  Table 3 numbers, copied from the paper and never mixed with measured rows (:mod:`~suite.report.reported`).
* ``report.html``: all of it on one self-contained page, with each run's architecture.

The split: :mod:`~suite.report.aggregate` (records to rows), :mod:`~suite.report.stats`
(intervals and tests), :mod:`~suite.report.tables` and :mod:`~suite.report.comparison` (documents),
:mod:`~suite.report.plots`, :mod:`~suite.report.html`. ``results/README.md`` documents every column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from suite.report.aggregate import (
    LEADERBOARD_FORMAT,
    SUMMARY_FORMAT,
    backbone_sizes,
    leaderboard,
    summary,
    task_blocks,
)
from suite.report.tables import Document

__all__ = ["write_reports", "make_reports", "Reports", "task_blocks", "leaderboard", "summary", "default_reference"]

PLOTS = {"ranks.png": "Ranks over tasks (critical-difference diagram)", "pareto.png": "Accuracy vs parameters",
         "budget.png": "Budget curves"}
PAIRED_PLOT = ("comparison.png", "Paired differences: mean and 95 % interval, the per-seed differences as dots")
PLACEMENTS_PLOT = ("placements.png", "Placements: % of the kept parameters per layer and op type")
OPTIONAL_DOCUMENTS = {"architectures", "reported"}


def default_reference(out: Path, records: list[dict]) -> str:
    """The first searched method of the run's plan (``run.json``; of a merged report, the first such
    method in its source runs' plans, in their order), else of the records (by run id)."""
    searched = [r["method"] for r in records if r["method_kind"] != "manual"]
    for methods in _planned_methods(Path(out)):
        searched_in_plan = [m for m in methods if m in searched]
        if searched_in_plan:
            return searched_in_plan[0]
    return searched[0] if searched else records[0]["method"]


def _planned_methods(out: Path, seen: frozenset = frozenset()):
    """The method lists of ``out``'s plan, or of a merged report's source runs' plans (a source that is
    itself a merged report: its sources'), in order."""
    from suite.rundir import MERGED_FILE, RunDir, read_json

    out = out.resolve()
    if RunDir(out).plan.is_file():
        yield read_json(RunDir(out).plan, "a run plan").get("methods", [])
    elif (out / MERGED_FILE).is_file() and out not in seen:
        for source in read_json(out / MERGED_FILE, "a merged report")["sources"]:
            yield from _planned_methods(out / source, seen | {out})


@dataclass
class Reports:
    """What :func:`make_reports` wrote, and the documents of its Markdown tables by name."""

    paths: list[Path]
    documents: dict[str, Document]


def write_reports(out_dir: Path | str, reference: str | None = None, paired_interval: str = "seeds",
                  reported: str | None = None) -> list[Path]:
    """:func:`make_reports`, returning the paths written."""
    return make_reports(out_dir, reference, paired_interval, reported).paths


def make_reports(out_dir: Path | str, reference: str | None = None, paired_interval: str = "seeds",
                 reported: str | None = None) -> Reports:
    """Rebuild every table, statistic and plot of the run in ``out_dir`` from its records.

    Args:
        out_dir: the run's folder.
        reference: the method the comparison pairs every other with (default: the first searched
            method of the run).
        paired_interval: ``seeds`` (default: with two or more seeds, a t-interval over the per-seed
            paired differences) or ``examples`` (the bootstrap over test examples, seeds held fixed,
            for every cell); :func:`suite.report.stats.paired_difference`.
        reported: ``paper``: add ``reported.md``, the seed paper's own numbers (:mod:`suite.report.reported`),
            for a run on T5-large only.

    Returns:
        The paths written (a plot that does not apply is not written, and a stale one is removed)
        and the documents of accuracy.md, efficiency.md, comparison.md, architectures.md (when the run
        has a searched row) and reported.md (with ``reported``).

    Raises:
        FileNotFoundError: ``out_dir`` holds no run (no records).
        ValueError: some record is invalid (``python -m suite validate`` lists them all), an
            unknown ``reference`` or ``paired_interval``, ``reported`` on a run not on T5-large.
    """
    from suite.records import valid_records
    from suite.report import choices, comparison, own, plots, stats, tables
    from suite.report import reported as paper_numbers
    from suite.report.html import write_html
    from suite.rundir import RunDir

    if paired_interval not in stats.INTERVALS:
        raise ValueError(f"unknown paired interval {paired_interval!r}; valid: {', '.join(stats.INTERVALS)}")
    out, run = Path(out_dir), RunDir(out_dir)
    records = valid_records(out)
    predictions = {r["run_id"]: rows for r in records if r["status"] == "ok"
                   if (rows := stats.load_predictions(out, r)) is not None}
    lb = leaderboard(records)
    if reported is not None:  # before anything is written
        paper_numbers.check(reported, backbone_sizes(lb))
    sm = summary(lb, predictions)
    reference = reference or default_reference(out, records)
    compared = comparison.compare(lb, predictions, reference, paired_interval)
    ranks = stats.rank_test(comparison.rank_scores(lb, sm))
    accuracy = tables.accuracy(lb, sm, records)
    accuracy.tables += own.own_training(lb, records)  # a separate table of the methods' own scores
    chosen = choices.choices(records, lb)
    documents: dict[str, Document] = {
        "accuracy": accuracy,
        "efficiency": tables.efficiency(lb, sm, records),
        "comparison": comparison.comparison_document(compared, ranks, reference, paired_interval),
        **({"architectures": choices.document(chosen)} if chosen else {}),
        **({"reported": paper_numbers.document()} if reported else {}),
    }
    written = []

    def write_text(name: str, text: str) -> None:
        path = run.report(name)
        path.write_text(text)
        written.append(path)

    write_text("leaderboard.csv", lb.to_csv(index=False, float_format=LEADERBOARD_FORMAT, lineterminator="\n"))
    write_text("summary.csv", sm.to_csv(index=False, float_format=SUMMARY_FORMAT, lineterminator="\n"))
    write_text("comparison.csv", compared.to_csv(index=False, float_format=SUMMARY_FORMAT, lineterminator="\n"))
    for name, doc in documents.items():
        write_text(f"{name}.md", doc.to_markdown())
    for name in OPTIONAL_DOCUMENTS - set(documents):  # a stale one of an earlier call
        run.report(f"{name}.md").unlink(missing_ok=True)
    styles = plots.label_styles(lb)
    paired = (compared.note == "").any()
    draw = {PAIRED_PLOT[0]: (lambda p: plots.comparison_plot(compared, p, styles)) if paired else None,
            "ranks.png": (lambda p: plots.ranks_plot(ranks, p, styles)) if ranks["friedman"] is not None else None,
            "pareto.png": lambda p: plots.pareto_plot(lb, sm, p),
            "budget.png": (lambda p: plots.budget_plot(lb, sm, p)) if plots.several_budgets(lb) else None,
            PLACEMENTS_PLOT[0]: ((lambda p: plots.placements_plot(chosen.matrix, styles, p))
                                 if chosen and chosen.labels else None)}
    for name, plot in draw.items():
        path = run.report(name)
        if plot is None:
            path.unlink(missing_ok=True)
        else:
            plot(path)
            written.append(path)
    title = f"AutoPEFT suite run: {', '.join(sorted(lb.method.unique()))} on {', '.join(sorted(lb.task.unique()))}"
    written.append(write_html(run.report("report.html"), title, documents,
                              {caption: run.report(name) for name, caption in PLOTS.items()}, records,
                              beside={"comparison": {PAIRED_PLOT[1]: run.report(PAIRED_PLOT[0])},
                                      "architectures": {PLACEMENTS_PLOT[1]: run.report(PLACEMENTS_PLOT[0])}}))
    return Reports(written, documents)
