"""``python -m suite table --out RUN1 --out RUN2 ... --to DIR``: one leaderboard and one report from several runs.

A sweep is often run in pieces (tasks or seeds on different clusters, a method added later, a run
resumed elsewhere). :func:`merge_runs` gathers their records into a new folder ``DIR`` that reads
like one run's, and ``suite.report`` builds every table from it; ``table --out DIR`` rebuilds them
later. The source runs are only read.

* **Settings.** Records whose settings differ are refused, with one line naming the setting, its two
  values and a record of each: the backbone, the retrain recipe, a method's options, and, among the
  records of one task, the harness (epochs or steps, sample counts, batch, lengths, learning rate,
  precision, scoring: every ``HarnessConfig`` setting but the device) and a method's learning-rate
  protocol (its retrain's one rate, or the grid that picked it: ``suite.learning_rate.protocol``).
  Refusing, rather than keeping them apart as separate rows: the tables compare every row with every
  other (paired differences, ranks), so within a task every row must have been trained and scored
  alike; and a record is known by its run id (method, space, task, seed, budget), which names none of
  these settings, so two settings of one job could not even be told apart in one folder. Tasks may
  differ in their harness, as the paper's do (a small task trains more epochs): every method still
  meets one harness per task, and the statistics over tasks (average ranks, the Friedman test) rank
  methods within each task. Merge runs of one setting; one report per setting.
  Only ``ok`` records are compared: a failed record holds no score and may not have resolved every
  setting (its precision, say), and is counted, as in a run, as a failure of its row.
* **Duplicates.** The same record reached twice (the same run id, and by the check above the same
  settings: a folder given twice, overlapping seeds, a copy of a run) counts once: the ``ok`` one
  over a failed one, else the first ``--out``'s. Its seed would otherwise count twice.
* **Files.** Records are copied unchanged. Their paths are relative to their own run folder, so the
  merged folder gets each kept record's test predictions copied at the same relative path (the
  paired statistics read them; they are small) and its weights as a symbolic link to the source's
  file (they can be gigabytes; ``suite export --out DIR`` reads through the link). The links and
  ``merged.json`` (the sources and where each record came from) name the sources by their path
  relative to ``DIR``: a merged report committed or moved together with its runs still reads them.
* **The target.** ``DIR`` is a new folder (or empty, or an earlier merge, which is replaced); never a
  source run, inside one, or holding one. It is written in a temporary folder beside it and renamed,
  so an interrupted merge leaves any earlier one whole.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.rundir import MERGED_FILE, PREDICTIONS, WEIGHTS, RunDir, write_json_atomic

# harness settings that say where a run ran and how often it saved its state, not what it did (a retrain
# run again from a mid-trial checkpoint ends bit for bit as an unbroken one: suite.checkpoints)
NOT_COMPARED = ("device", "checkpoint_every")


class MergeError(ValueError):
    """Runs that cannot be merged into one report; one line."""


@dataclass
class Merged:
    """What :func:`merge_runs` wrote."""

    to: Path
    sources: list[Path]
    records: int
    duplicates: dict[str, list[str]]  # run id -> the sources whose copy was not kept

    def summary(self) -> str:
        dropped = sum(len(v) for v in self.duplicates.values())
        twice = f"; {dropped} duplicate record(s) counted once" if dropped else ""
        return f"merged {self.records} records from {len(self.sources)} runs into {self.to}{twice}"


def write_table(outs: Sequence[str], to: str | None, reference: str | None = None,
                paired_interval: str = "seeds", reported: str | None = None) -> list[Path]:
    """``python -m suite table``: the reports of the one run in ``outs``, or of the runs in ``outs``
    merged into ``to`` (printing what was merged); :func:`suite.report.write_reports`' paths."""
    from suite.report import write_reports

    if to is None:
        if len(outs) > 1:
            raise MergeError(f"{len(outs)} --out runs make one report in a new folder: add --to DIR")
        return write_reports(outs[0], reference, paired_interval, reported)
    merged = merge_runs(outs, to)
    print(merged.summary())
    return write_reports(merged.to, reference, paired_interval, reported)


def merge_runs(sources: Sequence[Path | str], to: Path | str) -> Merged:
    """Merge the runs in ``sources`` into the new folder ``to`` (see the module docstring).

    Raises:
        FileNotFoundError: a source holds no run (no records).
        ValueError: a source holds an invalid record (:func:`suite.records.valid_records`' one line).
        MergeError: settings that differ, or a ``to`` that is not a new folder.
    """
    from suite.records import valid_records

    paths = list(dict.fromkeys(Path(s).resolve() for s in sources))
    to = Path(to).resolve()
    _check_target(paths, to)
    entries = [(source, r) for source in paths for r in valid_records(source)]
    check_settings(entries)
    kept, duplicates = _deduplicated(entries)
    for source, record in kept:  # the statistics need every prediction file a record names
        info = (record.get("files") or {}).get(PREDICTIONS)
        if info and not (source / info["path"]).is_file():
            raise MergeError(f"{source / info['path']} (named by record {record['run_id']}) is missing")
    _write(to, paths, kept, duplicates)
    return Merged(to, paths, len(kept), duplicates)


def compared_settings(record: dict[str, Any]) -> dict[str, Any]:
    """What two records in one merged report must agree on, by a name that says it (the harness and a
    method's learning-rate protocol: among the records of one task)."""
    from suite.harness import HarnessConfig
    from suite.learning_rate import protocol

    harness = {f.name: f.default for f in dataclasses.fields(HarnessConfig)} | (record.get("harness") or {})
    recipe = ((record.get("retrain") or {}).get("recipe") or {}).get("name", "suite")
    out = {"backbone": record["backbone"], "retrain recipe": recipe,
           f"{record['method']} learning-rate protocol on {record['task']}": protocol(record)}
    out |= {f"harness {k} on {record['task']}": v for k, v in harness.items() if k not in NOT_COMPARED}
    return out | {f"{record['method']} option {k}": v for k, v in (record.get("method_config") or {}).items()}


def check_settings(entries: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Stop at the first setting two ``ok`` records disagree on (a method's options: among its records;
    the harness and a learning-rate protocol: among a task's)."""
    first: dict[str, tuple[Any, Path, str]] = {}
    for source, record in entries:
        if record["status"] != "ok":
            continue
        for name, value in compared_settings(record).items():
            seen, where, run_id = first.setdefault(name, (value, source, record["run_id"]))
            if value != seen:
                raise MergeError(f"cannot merge: {name} is {seen!r} in {where} (e.g. {run_id}) and {value!r} in "
                                 f"{source} (e.g. {record['run_id']}); records of different settings are never "
                                 "averaged or compared in one table: merge the runs of each setting apart")


def _deduplicated(entries: list[tuple[Path, dict[str, Any]]]):
    """One record per run id: an ``ok`` one first, then the first source's; the others by run id."""
    by_id: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for entry in entries:
        by_id.setdefault(entry[1]["run_id"], []).append(entry)
    kept, duplicates = [], {}
    for run_id, copies in sorted(by_id.items()):
        best = min(range(len(copies)), key=lambda i: (copies[i][1]["status"] != "ok", i))
        kept.append(copies[best])
        if len(copies) > 1:
            duplicates[run_id] = [str(source) for i, (source, _) in enumerate(copies) if i != best]
    return kept, duplicates


def _check_target(sources: list[Path], to: Path) -> None:
    for source in sources:
        if to == source or source in to.parents:
            raise MergeError(f"--to {to} is {'the run' if to == source else 'inside the run'} {source}: a merged "
                             "report goes to a new folder, and the runs it reads are never written")
        if to in source.parents:
            raise MergeError(f"--to {to} holds the run {source}: give a new folder beside the runs")
    if to.exists():
        if not to.is_dir():
            raise MergeError(f"--to {to} is a file; give a new folder")
        if any(to.iterdir()) and not (to / MERGED_FILE).is_file():
            raise MergeError(f"--to {to} is not empty and not an earlier merged report (no {MERGED_FILE}); "
                             "give a new folder")


def _write(to: Path, sources: list[Path], kept: list, duplicates: dict[str, list[str]]) -> None:
    to.parent.mkdir(parents=True, exist_ok=True)
    staging = to.parent / f".{to.name}.{uuid.uuid4().hex[:8]}.tmp"  # mkdir, not mkdtemp: the umask's mode
    staging.mkdir()
    try:
        target = RunDir(staging)
        for source, record in kept:
            write_json_atomic(target.record(record["run_id"]), record)
            files = record.get("files") or {}
            for key, info in files.items():
                origin, copy = source / info["path"], staging / info["path"]
                if key not in (PREDICTIONS, WEIGHTS) or not origin.is_file():
                    continue
                copy.parent.mkdir(parents=True, exist_ok=True)
                if key == PREDICTIONS:
                    shutil.copyfile(origin, copy)
                else:  # relative: staging and ``to`` are siblings, so the link holds once renamed
                    copy.symlink_to(os.path.relpath(origin.resolve(), copy.parent))
        where = {source: os.path.relpath(source, to) for source in sources}
        write_json_atomic(staging / MERGED_FILE, {
            "sources": list(where.values()), "records": {r["run_id"]: where[s] for s, r in kept},
            "duplicates": {run_id: [where[Path(s)] for s in copies] for run_id, copies in duplicates.items()}})
        if to.exists():
            shutil.rmtree(to)  # an earlier merge (checked) or an empty folder
        staging.rename(to)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
