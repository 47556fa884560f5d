"""What each searched method chose (``architectures.md``): its parameters by op type and by layer.

Each ok record of a searched (or transferred) row is read off its architecture: every placement's
parameters are its op's analytic count at its site (the terms of :func:`spaces.space.count_params`),
on the backbone's sites built from its config on the meta device (no weights are loaded). A record's
*shares* are its parameters per op type, per layer, and per layer × op type, as % of its own total;
a row's cell is their mean over its seeds on a task, and its ``all tasks`` cell the mean of those
over the tasks it ran (each task weighs the same, as the accuracy table's AVG). Manual baselines are
left out: their architectures are fixed (``python -m suite count`` shows them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from spaces.architecture import STACK_LEVEL, Site
from suite.report.aggregate import ordered_tasks, row_keys, row_labels, task_label
from suite.report.tables import Document, Table

# How the tables name each op type (an op registered elsewhere: its own name).
OP_TYPES = {"lora": "LoRA", "dora": "DoRA", "adapter_lr": "Adapter-LR", "adapter_serial": "Serial adapter",
            "adapter_parallel": "Parallel adapter", "prefix": "Prefix", "ia3": "IA3", "bitfit": "BitFit",
            "lnfit": "LNFit"}
ALL_TASKS = "all tasks"


def op_type(op: str) -> str:
    return OP_TYPES.get(op, op)


def layer_label(site: Site) -> str:
    """``enc.3``; ``dec.final`` for a stack-level site (a final norm, the lm_head)."""
    return f"{site.stack}.{'final' if site.layer == STACK_LEVEL else site.layer}"


def layer_order(label: str) -> tuple:
    """Encoder before decoder, layers in order, a stack's ``final`` after its layers."""
    stack, layer = label.split(".", 1)
    return stack != "enc", 10**6 if layer == "final" else int(layer)


@dataclass
class Choices:
    """The mean shares (%) of each table row (by its label, in table order) and what could not be read.

    ``by_op`` and ``by_layer`` have one row per (label, task) and an ``all tasks`` row per label;
    ``matrix`` maps a label to its layer × op type shares over all its tasks (the heat map)."""

    labels: list[str]
    tasks: dict[str, list[str]]
    runs: dict[tuple[str, str], int]
    params: dict[tuple[str, str], float]
    by_op: pd.DataFrame
    by_layer: pd.DataFrame
    matrix: dict[str, pd.DataFrame]
    problems: list[str] = field(default_factory=list)


def placements(records: list[dict[str, Any]], labels: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
    """One row per placement of every ok record in ``labels`` (run id -> row label): its label, task,
    run id, layer, op type and parameters; and a line per backbone whose config could not be read."""
    from spaces.architecture import Architecture
    from spaces.ops import OPS
    from suite.backbones import backbone_sites

    sites, problems, rows = {}, [], []
    for r in records:
        if r["run_id"] not in labels or not r.get("architecture"):
            continue
        backbone = r["backbone"]
        if backbone not in sites:
            try:
                sites[backbone] = backbone_sites(backbone)
            except (ValueError, OSError) as e:  # a hub id this machine cannot reach: say so, keep the report
                sites[backbone] = None
                problems.append(f"{backbone}: its config could not be read ({str(e).splitlines()[0]}); "
                                "its runs are left out")
        if sites[backbone] is None:
            continue
        for p in Architecture.from_dict(r["architecture"]).placements:
            rows.append({"label": labels[r["run_id"]], "task": r["task"], "run_id": r["run_id"],
                         "layer": layer_label(p.site), "op": op_type(p.op),
                         "params": OPS[p.op].count(sites[backbone].spec(p.site), p.size)})
    return pd.DataFrame(rows, columns=["label", "task", "run_id", "layer", "op", "params"]), problems


def _mean_shares(long: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per (label, task) and per label over its tasks, the mean over runs of each record's % of its
    parameters in each value of ``columns`` (0 where a record kept none there)."""
    per_run = long.pivot_table(index=["label", "task", "run_id"], columns=columns, values="params", aggfunc="sum",
                               fill_value=0)
    per_run = 100 * per_run.div(per_run.sum(axis=1), axis=0)
    per_task = per_run.groupby(level=["label", "task"]).mean()
    over_tasks = per_task.groupby(level="label").mean()
    over_tasks.index = pd.MultiIndex.from_tuples([(label, ALL_TASKS) for label in over_tasks.index],
                                                 names=["label", "task"])
    return pd.concat([per_task, over_tasks])


def choices(records: list[dict[str, Any]], lb: pd.DataFrame) -> Choices | None:
    """The shares of every searched or transferred row of the run; None when it has none (and no
    backbone failed to load: then no row, and the problem)."""
    label_of = {k: label for k, label in row_labels(lb).items() if k[2] != "manual"}
    labels = {run_id: label_of[k] for run_id, k, status in zip(lb.run_id, row_keys(lb), lb.status)
              if status == "ok" and k in label_of}
    long, problems = placements(records, labels)
    if long.empty:
        return Choices([], {}, {}, {}, pd.DataFrame(), pd.DataFrame(), {}, problems) if problems else None
    order = [label for label in label_of.values() if label in set(long.label)]
    tasks = {label: ordered_tasks(long[long.label == label].task) for label in order}
    totals = long.groupby(["label", "task", "run_id"]).params.sum()
    runs = totals.groupby(level=["label", "task"]).size().to_dict()
    params = totals.groupby(level=["label", "task"]).mean()
    over_tasks = params.groupby(level="label").mean()
    params = params.to_dict() | {(label, ALL_TASKS): float(v) for label, v in over_tasks.items()}
    matrix = _mean_shares(long, ["layer", "op"]).xs(ALL_TASKS, level="task")
    return Choices(order, tasks, runs, params, _mean_shares(long, ["op"]), _mean_shares(long, ["layer"]),
                   {label: _layers_by_ops(matrix.loc[label]) for label in order}, problems)


def _layers_by_ops(shares: pd.Series) -> pd.DataFrame:
    """A row's (layer, op type) shares as a layer × op type table, layers in order, op types as in the tables."""
    table = shares.unstack("op").fillna(0.0)
    return table.loc[sorted(table.index, key=layer_order), op_types(table.columns)]


def op_types(present) -> list[str]:
    """The op types of ``present`` in the tables' order (the suite's ops first, then others by name)."""
    known = [op for op in OP_TYPES.values() if op in set(present)]
    return known + sorted(set(present) - set(known))


def _share(value: float) -> str:
    return "" if value == 0 else f"{value:.1f}"


def document(c: Choices) -> Document:
    """``architectures.md``: parameters by op type per row × task (and all tasks), by layer per row."""
    ops = op_types(c.by_op.columns)
    layers = sorted(c.by_layer.columns, key=layer_order)
    rows = []
    for label in c.labels:
        for task in c.tasks[label] + ([ALL_TASKS] if len(c.tasks[label]) > 1 else []):
            shares = c.by_op.loc[(label, task)]
            runs = c.runs[label, task] if task != ALL_TASKS else sum(c.runs[label, t] for t in c.tasks[label])
            rows.append([label, task_label(task) if task != ALL_TASKS else ALL_TASKS, str(runs),
                         f"{c.params[label, task]:,.0f}", *[_share(shares[op]) for op in ops]])
    by_op = Table("Parameters by op type (% of the kept parameters)", ["Method", "Task", "Runs", "Parameters", *ops],
                  rows, "llrr" + "r" * len(ops), note=(
                      "Parameters: the mean over the row's runs (seeds) of its architecture's trainable PEFT "
                      "parameters; each op type's cell: the mean over the runs of its share of them (blank: none). "
                      f"`{ALL_TASKS}`: the mean of the task rows above it (each task weighs the same)."))
    by_layer = Table("Parameters by layer (% of the kept parameters, all tasks)", ["Layer", *c.labels],
                     [[layer, *[_share(c.by_layer.loc[(label, ALL_TASKS)].get(layer, 0.0)) for label in c.labels]]
                      for layer in layers], "l" + "r" * len(c.labels), note=(
                         "Each cell: a row's share of its kept parameters in that layer (`enc.3`: encoder block 3; "
                         "`final`: a stack's final norm or output head), mean over seeds, then over the tasks it ran."))
    doc = Document("What each searched method chose", [by_op, by_layer])
    doc.notes += [
        "From each ok run's architecture (searched, or transferred from another task), counted on its backbone's "
        "sites from its config alone. Manual baselines are left out: their placements are fixed "
        "(`python -m suite count --method NAME` shows them). `placements.png` draws each row's shares per layer "
        "and op type.",
        *(f"- {p}" for p in c.problems),
        "",
    ]
    return doc
