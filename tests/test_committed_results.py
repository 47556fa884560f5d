"""The committed reference runs (``results/reference/*``) are what the README quotes: every record
is valid, every file a record names is there with its hash, no file carries a path of the machine
it was made on, and the committed tables are exactly what ``table`` rebuilds from the records."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
RUNS = sorted(p.parent for p in REFERENCE.rglob("records") if p.is_dir())
IDS = [str(p.relative_to(REFERENCE)) for p in RUNS]
# An absolute path of a build machine: the session's folders, a home, a temporary folder.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users|private/var)/")
TABLES = ("accuracy.md", "efficiency.md", "comparison.md", "architectures.md", "leaderboard.csv", "summary.csv",
          "comparison.csv")


def test_there_are_committed_runs():
    assert {"offline-default/bipeft-s3delta", "offline-default/lora-bitfit", "minilm-cpu-v1", "transfer",
            "minilm-cpu/main", "minilm-cpu/cb", "minilm-cpu/ablations", "minilm-cpu/budgets", "minilm-cpu/report"} <= set(IDS)


@pytest.mark.parametrize("run", RUNS, ids=IDS)
def test_records_valid_and_files_present(run):
    from suite.records import validate_dir
    from suite.rundir import load_records

    assert validate_dir(run) == []
    for record in load_records(run):
        for kind, entry in (record.get("files") or {}).items():
            path = run / entry["path"]
            assert path.is_file(), f"{record['run_id']}: its {kind} file {entry['path']} is not committed"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], path


@pytest.mark.parametrize("run", RUNS, ids=IDS)
def test_no_machine_paths(run):
    for path in run.rglob("*"):
        if path.suffix in (".json", ".md", ".csv", ".html", ".log", ".txt"):
            match = MACHINE_PATH.search(path.read_text(errors="replace"))
            assert match is None, f"{path.relative_to(run)} carries a machine path near {match.group(0)!r}"


@pytest.mark.parametrize("run", RUNS, ids=IDS)
def test_tables_rebuild_from_records(run, tmp_path):
    from suite.report import write_reports

    copy = _copy_without_tables(run, tmp_path)
    write_reports(copy)  # the default reference, as the committed tables were built
    for name in TABLES:
        assert (copy / name).is_file() == (run / name).is_file(), f"{run}/{name}: committed or not as table writes it"
        if (run / name).is_file():
            assert (copy / name).read_text() == (run / name).read_text(), f"{run}/{name} is stale"


def _copy_without_tables(run: Path, tmp_path: Path) -> Path:
    """``run`` copied under ``tmp_path`` without its tables; a merged report's source runs (whose plans
    name its reference method) copied beside it, where its ``merged.json`` points."""
    from suite.rundir import MERGED_FILE, read_json

    ignore = shutil.ignore_patterns(*TABLES, "*.png", "report.html")
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=ignore)
    merged = run / MERGED_FILE
    for source in read_json(merged, "a merged report")["sources"] if merged.is_file() else ():
        shutil.copytree(run / source, copy / source, ignore=ignore)
    return copy
