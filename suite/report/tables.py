"""The tables of a run as documents (titled tables and notes), rendered to Markdown here and to HTML
by :mod:`suite.report.html`: accuracy (the paper's Table 1) and efficiency (Table 3)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from suite.report.aggregate import (
    AVG,
    backbone_sizes,
    capped_keys,
    lr_label,
    method_label,
    method_name_label,
    missing,
    ordered_keys,
    ordered_tasks,
    row_key,
    row_keys,
    several_backbones,
    step_capped,
    task_blocks,
    task_label,
)
from suite.report.stats import TOO_FEW
from suite.tasks import GROUPS


@dataclass
class Table:
    """A titled table of text cells; ``align`` has one ``l`` or ``r`` per column. A ``detail`` table
    is in the files and the HTML page but not in :meth:`Document.tables_markdown`."""

    title: str | None
    header: list[str]
    rows: list[list[str]]
    align: str
    note: str = ""
    detail: bool = False


@dataclass
class Document:
    """A page of tables (accuracy.md, efficiency.md, comparison.md) and its closing notes."""

    title: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        return "\n".join(self._markdown(notes=True) + self.notes + [""])

    def tables_markdown(self) -> str:
        """The title and the tables apart from every note and detail table (what ``python -m suite run``
        prints of accuracy.md and efficiency.md)."""
        return "\n".join(self._markdown(notes=False)).rstrip()

    def _markdown(self, notes: bool) -> list[str]:
        out = [f"# {self.title}", ""]
        for t in self.tables if notes else [t for t in self.tables if not t.detail]:
            if t.title:
                out += [f"## {t.title}", ""]
            out.append(markdown_table(t.header, t.rows, t.align) if t.rows else "(none)\n")
            if t.note and notes:
                out += [t.note, ""]
        return out


def markdown_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A pipe table (pandas' ``to_markdown``, i.e. tabulate); ``align`` has one ``l`` or ``r`` per column.
    Cells are text already, so tabulate's number parsing is off."""
    table = pd.DataFrame(rows, columns=header)
    colalign = ["right" if a == "r" else "left" for a in align]
    return table.to_markdown(index=False, tablefmt="pipe", colalign=colalign, disable_numparse=True) + "\n"


def num(value: float | None, digits: int = 2) -> str:
    return "–" if missing(value) else f"{value:,.{digits}f}"


TOO_FEW_NOTE = "`[–]`: no interval, the cell's one run was scored on a single test example. "


def capped_note(records: list[dict[str, Any]], lb: pd.DataFrame, space: bool = True) -> list[str]:
    """The † footnote: the row's searches that stopped at their step cap before their method's end,
    each by its row's label as the table prints it (``space``: with the space; a method may have a row
    per budget) and with how far it got (BIPEFT: "after N of Z triggers"), whether or not the plan was
    short."""
    several = several_backbones(lb)
    labels = {r["run_id"]: method_label(row_key(r), several, space=space) for r in lb.to_dict("records")}
    lines = ["†: some of the row's searches stopped at their step cap before their method's end:"]
    for r in records:
        search = r.get("search") or {}
        if r["status"] != "ok" or not step_capped(r):
            continue
        how = (f" after {search['triggers']} of {search['max_triggers']} triggers"
               if "triggers" in search and "max_triggers" in search else "")
        steps = f" ({search['steps']} of {search['planned_steps']} planned steps)" if "planned_steps" in search else ""
        lines.append(f"- {labels[r['run_id']]}, {task_label(r['task'])}, seed {r['seed']}: "
                     f"stopped at the step cap{how}{steps}.")
    return lines if len(lines) > 1 else [lines[0][:-1] + "."]


def cell(row: dict[str, Any] | None, n_run_seeds: int) -> str:
    """``mean [low, high]`` of a summary row, with ``(n=k)`` / ``(k failed)`` marks."""
    if row is None:
        return ""
    mean, n, failed = row["test_score_mean"], int(row["n_seeds"]), row["n_failed"]
    low, high = row.get("test_score_ci_low", math.nan), row.get("test_score_ci_high", math.nan)
    interval = " [–]" if row.get("ci_over") == TOO_FEW else "" if math.isnan(low) else f" [{low:.1f}, {high:.1f}]"
    text = "–" if math.isnan(mean) else f"{mean:.2f}{interval}"
    if failed:
        text += f" (n={n}, {failed} failed)"
    elif n < n_run_seeds:
        text += f" (n={n})"
    return text


def failed_lines(lb: pd.DataFrame) -> list[str]:
    """A footnote per failed record: its run id and the one-line reason (never a traceback)."""
    failed = lb[lb.status == "failed"]
    if failed.empty:
        return [f"Runs: {len(lb)}, none failed."]
    lines = [f"Runs: {len(lb)}, {len(failed)} failed (– in the tables, excluded from every mean):"]
    lines += [f"- `{r.run_id}`: {first_line(r.error)}" for r in failed.itertuples()]
    return lines


def failed_summary(out, run_ids: set[str], stopped: Exception | None = None) -> str | None:
    """``2 of 6 jobs failed: a (reason); b (reason); see records/`` for this run's failed records (and,
    when a record could not be written, ``stopped``, each job without a record), or None."""
    from suite.rundir import RunDir, load_records

    records = [r for r in load_records(out) if r["run_id"] in run_ids]
    failed = [(r["run_id"], first_line(r["error"])[:120]) for r in records if r["status"] == "failed"]
    if stopped is not None:
        recorded = {r["run_id"] for r in records}
        failed += [(run_id, f"not recorded: {stopped}") for run_id in sorted(run_ids - recorded)]
    if not failed:
        return None
    shown = "; ".join(f"{run_id} ({reason})" for run_id, reason in failed[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return f"{len(failed)} of {len(run_ids)} jobs failed: {shown}{more}; see {RunDir(out).records}/"


def first_line(error: str | None) -> str:
    """The one line of an error worth printing: ANSI colour codes stripped, the exception line kept."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", error or "failed")
    return next((line.strip() for line in text.splitlines() if line.strip()), "failed")[:300]


def interval_note(sm: pd.DataFrame) -> str:
    over = set(sm.get("ci_over", pd.Series(dtype=str)).dropna()) - {""}
    parts = []
    if "seeds" in over:
        parts.append("a t-interval over the seeds where a cell has two or more")
    if "examples" in over:
        parts.append("a percentile bootstrap over the test examples where it has one seed")
    text = ("`[low, high]`: the 95 % interval of the mean, " + " and ".join(parts) + ". ") if parts else ""
    return text + (TOO_FEW_NOTE if TOO_FEW in over else "")


def accuracy(lb: pd.DataFrame, sm: pd.DataFrame, records: list[dict[str, Any]] = ()) -> Document:
    """The paper's Table 1: per benchmark, Ratio | Method | tasks | AVG; manual baselines first."""
    cells = {(row_key(r), r["task"]): r for r in sm.to_dict("records")}
    keys = ordered_keys(lb)
    several = several_backbones(lb)
    seeds = sorted(lb.seed.unique())
    doc = Document("Accuracy (test split)")
    capped = capped_keys(lb)
    for title, tasks in task_blocks(lb.task):
        header = ["Ratio", "Method", *[task_label(t) for t in tasks], "AVG"]
        rows, section = [], None
        for key in keys:
            task_rows = [cells.get((key, t)) for t in tasks]
            if all(r is None for r in task_rows):
                continue
            kind = {"manual": "Manual PEFT methods", "transfer": "Transferred structures"}.get(
                key[2], "Automated PEFT methods")
            if kind != section:
                rows.append(["", f"**{kind}**", *[""] * (len(tasks) + 1)])
                section = kind
            scored = [r for r in task_rows if r is not None and r["n_seeds"] > 0]
            ratio = [r["ratio_permyriad_mean"] for r in scored]
            ratio_text = f"{statistics.fmean(ratio):.2f}‱" if ratio else "–"
            complete = len(scored) == len(tasks)
            avg = f"{statistics.fmean(r['test_score_mean'] for r in scored):.2f}" if complete else "–"
            label = method_label(key, several) + (" †" if key in capped else "")
            rows.append([ratio_text, label, *[cell(r, len(seeds)) for r in task_rows], avg])
        doc.tables.append(Table(title, header, rows, "rl" + "r" * (len(tasks) + 1)))
    metric_text = ", ".join(f"{task_label(t) if t.split('/')[0] in GROUPS else t} {m}" for t, m in
                            lb.groupby("task").selection_metric.first().reindex(ordered_tasks(lb.task)).items())
    backbones = ", ".join(f"{b} ({n:,} parameters)" for b, n in backbone_sizes(lb).items() if n is not None)
    doc.notes += [
        f"Cells: the test-split selection metric ×100 ({metric_text}), mean over {len(seeds)} "
        f"seed{'s' if len(seeds) > 1 else ''} ({', '.join(str(s) for s in seeds)}). {interval_note(sm)}"
        "`(n=k)` marks a cell with fewer ok runs, – a cell whose runs all failed, a blank one a task the row "
        "did not run. AVG: mean of a row's cells, only when it has every task of the block (– otherwise). "
        "`comparison.md` says which differences are larger than their noise.",
        f"Ratio: trainable PEFT parameters / backbone parameters in ‱ (×1e4), mean over the row's tasks; "
        f"task heads are not counted. Backbone: {backbones}. `≤b` is a searched method's budget{_budgets(lb)}.",
        *(capped_note(records, lb) if capped else []),
        *lr_note(records),
        precision_note(lb),
        "",
        *failed_lines(lb),
    ]
    return doc


def _budgets(lb: pd.DataFrame) -> str:
    """``: 1.39‱ = 3,157 parameters, …`` for the run's budgets (reports show both forms)."""
    budgets = sorted({(k[5], k[6]) for k in row_keys(lb) if k[5] is not None and k[6] is not None})
    return (": " + ", ".join(f"{f * 1e4:.2f}‱ = {n:,} parameters" for f, n in budgets)) if budgets else ""


def efficiency(lb: pd.DataFrame, sm: pd.DataFrame, records: list[dict[str, Any]] = ()) -> Document:
    """The paper's Table 3: per space × searched method, average search and re-train minutes and
    their ratio (the summary's AVG row: seeds averaged per task, then the row's tasks), plus peaks."""
    run_tasks = ordered_tasks(lb.task)
    several = several_backbones(lb)
    averages = {row_key(r): r for r in sm[sm.task == AVG].to_dict("records")}
    header = ["Setting", "Method", "Search wall (min)", "Search compute (min)", "Re-train (min)", "Ratio",
              "Search peak (MB)", "Re-train peak (MB)", "Tasks", "Runs"]
    rows, keys, capped = [], row_keys(lb), capped_keys(lb)
    for key in ordered_keys(lb):
        if key[2] in ("manual", "transfer"):  # nothing searched
            continue
        runs = lb[same_row(keys, key)]
        ok = runs[runs.status == "ok"]
        avg = averages[key]
        wall, search, retrain = avg["search_min_mean"], avg["search_compute_min_mean"], avg["retrain_min_mean"]
        ratio = search / retrain if retrain else math.nan
        n_failed = len(runs) - len(ok)
        label = method_label(key, several, space=False) + (" †" if key in capped else "")
        rows.append([key[4].upper(), label, num(wall), num(search), num(retrain),
                     num(ratio), num(ok.search_peak_memory_mb.max(), 0), num(ok.peak_memory_mb.max(), 0),
                     f"{int(avg['n_tasks'])}/{len(run_tasks)}", f"{len(ok)} ok" + (f", {n_failed} failed" if n_failed else "")])
    hardware = sorted(lb.hardware.dropna().unique())
    hardware_text = (f"every run on {hardware[0]}" if len(hardware) == 1 else
                     f"runs on different hardware ({', '.join(hardware)}): times are not comparable")
    doc = Document("Efficiency (search vs re-train time)")
    doc.tables.append(Table(None, header, rows, "llrrrrrrrr", note=(
        f"Minutes averaged over the ok runs (seeds) of each task, then over the row's tasks "
        f"(of {', '.join(run_tasks)}). Search wall: from the search's start to its architecture; search "
        "compute: the sum of its trials' seconds (a black-box search's candidates, which may run side by "
        "side; a one-shot search is one trial, so the two agree). Ratio = Search compute / Re-train of "
        "these averages, as the paper's Table 3 (so running candidates in parallel does not make a search "
        "look cheaper). Peaks: the largest over the row's ok runs (GPU memory allocated on a GPU, resident "
        f"set on a CPU). Manual baselines and transferred structures do not search and are left out. "
        f"Hardware: {hardware_text}.")))
    doc.tables.append(throughput(lb, averages, keys))
    doc.tables += delivered(records)
    doc.notes += ([*capped_note(records, lb, space=False), ""] if capped else []) + [precision_note(lb), ""] + failed_lines(lb)
    return doc


def lr_note(records: list[dict[str, Any]]) -> list[str]:
    """The learning-rate protocol of the table's runs (none for records from before ``retrain.lr``)."""
    from suite.learning_rate import DEFAULT_LR, lr_text

    ok = [r for r in records if r["status"] == "ok" and (r.get("retrain") or {}).get("lr") is not None]
    if not ok:
        return []
    run_lr = ", ".join(map(lr_text, sorted({(r.get("harness") or {}).get("lr", DEFAULT_LR) for r in ok})))
    grids = sorted({tuple(r["retrain"]["lr_grid"]["values"]) for r in ok if "lr_grid" in r["retrain"]})
    if grids:
        grid = "; ".join("{" + ", ".join(map(lr_text, g)) + "}" for g in grids)
        return [f"Learning rate: lr grid {grid} by validation: every row's retrain ran once at each learning rate "
                "(the same seed and data), and the one with the best validation score (the task's selection metric) "
                "gives the reported test score; each record keeps every rate's validation score (`retrain.lr_grid`) "
                f"and only the chosen rate's test score. The searches trained at lr {run_lr} (`--lr`)."]
    full = (", except a row labelled `lr …`: full fine-tuning at its own default, its backbone family's "
            "(`suite/learning_rate.py`; an explicit `--lr` is its too)") if any(lr_label(r) for r in ok) else ""
    return [f"Learning rate: every search and retrain at lr {run_lr} (`--lr`){full}."]


PRECISION_TEXT = {"bf16": "bf16 autocast (the backbone's matmuls in bf16; weights, optimizer state, losses, "
                          "metrics and search statistics in fp32)", "fp32": "fp32 throughout"}


def precision_note(lb: pd.DataFrame) -> str:
    """The precision the table's runs trained at (``--precision``), and a warning when they differ."""
    counts = lb.precision.dropna().value_counts()
    if counts.empty:
        return ""
    if len(counts) == 1:
        return f"Precision: every run {PRECISION_TEXT.get(counts.index[0], counts.index[0])}."
    runs = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    return (f"Precision: MIXED, {runs} runs: a row may pool both (the leaderboard's `precision` column says which "
            "run is which); its times and scores are not those of one precision.")


def same_row(keys: pd.Series, key: tuple) -> pd.Series:
    """Which leaderboard rows (by their :func:`row_keys`) belong to the table row ``key``."""
    return keys.map(lambda k: k == key)


def throughput(lb: pd.DataFrame, averages: dict[tuple, dict], keys: pd.Series) -> Table:
    """Every table row's retrain throughput, the size of the weights it saves and its precision."""
    rows = []
    for key in ordered_keys(lb):
        ok = lb[same_row(keys, key) & (lb.status == "ok")]
        if ok.empty:
            continue
        avg = averages[key]
        rows.append([method_label(key, several_backbones(lb)), ", ".join(sorted(ok.precision.dropna().unique())),
                     num(avg["train_examples_per_s_mean"], 1), num(avg["train_tokens_per_s_mean"], 0),
                     num(avg["adapter_bytes_mean"], 0), f"{len(ok)} ok"])
    header = ["Method", "Precision", "Re-train examples/s", "Re-train tokens/s", "Adapter (bytes)", "Runs"]
    return Table("Re-train throughput and what it ships", header, rows, "llrrrr", note=(
        "Examples/s: the training examples a retrain stepped through (each epoch's, repeats counted) per second "
        "of its training, its validation evaluations left out; tokens/s: the same for their non-padding input "
        "tokens (a T5 model's source side: its targets are not counted). Adapter: the bytes of the trained "
        "weights a run saves (`weights/<run_id>.safetensors`: the PEFT weights and a task head, fp32). Each is "
        "averaged over the ok runs (seeds) of each task, then over the row's tasks; – where no run counted it "
        "(a record from before these counts, or a run without saved weights)."))


def delivered(records: list[dict[str, Any]]) -> list[Table]:
    """What each search that reports its stop and export delivered (BIPEFT and its ablations): the
    stop reason, triggers, steps, and the kept parameters before the export's budget fit and what
    that fit dropped or added, so a reader sees whether the search or the fit chose the architecture."""
    rows = []
    for r in records:
        search = r.get("search") or {}
        if r["status"] != "ok" or "export" not in search:
            continue
        fit = search["export"]
        triggers = f"{search['triggers']}/{search['max_triggers']}" if "max_triggers" in search else "–"
        rows.append([method_name_label(r["method"]), task_label(r["task"]), str(r["seed"]), search["stop_reason"],
                     triggers, f"{search['steps']}/{search['planned_steps']}", f"{fit['params_before']:,}",
                     f"{fit['params']:,}", f"{r['budget']['params']:,}", str(len(fit["dropped"])), str(len(fit["added"]))])
    if not rows:
        return []
    header = ["Method", "Task", "Seed", "Stop", "Triggers", "Steps", "Kept by the search", "Exported", "Budget",
              "Fit dropped", "Fit added"]
    return [Table("What each search delivered", header, rows, "lllllrrrrrr", detail=True, note=(
        "Kept by the search: the parameters of the modules the search kept, at their fixed or argmax size, "
        "before the export's budget fit; Fit dropped / added: modules the fit removed or re-added to land "
        "in [0.8 B, B] (0 and 0: the search chose the architecture)."))]
