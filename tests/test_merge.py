"""``python -m suite table --out A --out B --to DIR``: one report from several runs (suite.merge).

The runs are pieces of the fixture run (tests/fixtures/records): merged, they must give the whole
run's tables, each record once; runs whose settings differ are refused in one line; the sources
are never written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import snapshot

from suite.cli import main
from suite.report import write_reports

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TABLES = ("leaderboard.csv", "summary.csv", "comparison.csv", "accuracy.md", "efficiency.md", "comparison.md")
OK_STSB = "bipeft--s2--glue_stsb--seed1--b12629"


def piece(out: Path, seeds: tuple[int, ...], change=None) -> Path:
    """A run folder holding the fixture records of ``seeds`` (and their predictions), each passed
    through ``change`` if given (a change that returns None leaves the record out)."""
    for path in sorted((FIXTURES / "records").glob("*.json")):
        record = json.loads(path.read_text())
        if record["seed"] not in seeds:
            continue
        record = change(record) if change else record
        if record is None:
            continue
        (out / "records").mkdir(parents=True, exist_ok=True)
        (out / "records" / path.name).write_text(json.dumps(record, indent=2))
        for key, info in record["files"].items():
            target = out / info["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if key == "predictions":
                shutil.copyfile(FIXTURES / info["path"], target)
            else:
                target.write_bytes(b"weights")
    return out


def with_weights(record: dict) -> dict:
    """One record with (made-up) weights beside it, as a run keeps them (the fixture run has none)."""
    if record["run_id"] != OK_STSB:
        return record
    weights = {"path": f"weights/{OK_STSB}.safetensors", "sha256": "0" * 64, "bytes": len(b"weights")}
    return {**record, "files": {**record["files"], "weights": weights}}


@pytest.fixture
def whole(tmp_path) -> Path:
    """The fixture run as one folder, with its tables."""
    out = piece(tmp_path / "whole", (0, 1, 2), with_weights)
    write_reports(out)
    return out


def test_the_pieces_of_a_run_merge_into_the_whole_runs_tables(tmp_path, whole, capsys):
    # seed 1 in both (counted once); a's copy of OK_STSB has weights (linked, not copied), b's none
    a, b = piece(tmp_path / "a", (0, 1), with_weights), piece(tmp_path / "b", (1, 2))
    sources = {a: snapshot(a), b: snapshot(b)}
    merged = tmp_path / "merged"

    assert main(["table", "--out", str(a), "--out", str(b), "--to", str(merged)]) == 0
    assert "merged 45 records from 2 runs" in capsys.readouterr().out
    for name in TABLES:
        assert (merged / name).read_text() == (whole / name).read_text(), name
    provenance = json.loads((merged / "merged.json").read_text())
    seed1 = {p.stem for p in (FIXTURES / "records").glob("*seed1*.json")}
    assert set(provenance["duplicates"]) == seed1 and len(seed1) == 15
    assert all(provenance["records"][run_id] == "../a" for run_id in seed1)  # the first --out's, relative
    assert provenance["sources"] == ["../a", "../b"] and provenance["duplicates"][OK_STSB] == ["../b"]
    link = merged / "weights" / f"{OK_STSB}.safetensors"
    assert link.is_symlink() and link.read_bytes() == b"weights"
    assert os.readlink(link) == f"../../a/weights/{OK_STSB}.safetensors"  # moved with its runs, it still holds
    assert all(snapshot(folder) == before for folder, before in sources.items()), "a source run was written"

    # the merged folder holds all it needs: its tables rebuild from it alone, and it can be merged again
    before = (merged / "summary.csv").read_text()
    assert main(["table", "--out", str(merged)]) == 0
    assert (merged / "summary.csv").read_text() == before
    again = tmp_path / "again"
    assert main(["table", "--out", str(merged), "--out", str(b), "--to", str(again)]) == 0
    assert (again / "leaderboard.csv").read_text() == (whole / "leaderboard.csv").read_text()
    assert (again / "weights" / f"{OK_STSB}.safetensors").read_bytes() == b"weights"


def test_an_ok_record_wins_over_a_failed_copy_of_the_same_job(tmp_path):
    def failed(record):
        if record["run_id"] != OK_STSB:
            return record
        return {**record, "status": "failed", "error": "RuntimeError: out of memory",
                "metrics": {**record["metrics"], "validation": {}, "test": {}}, "files": {}}

    a, b = piece(tmp_path / "a", (1,), failed), piece(tmp_path / "b", (1,))
    merged = tmp_path / "merged"
    assert main(["table", "--out", str(a), "--out", str(b), "--to", str(merged)]) == 0
    assert json.loads((merged / "records" / f"{OK_STSB}.json").read_text())["status"] == "ok"
    assert json.loads((merged / "merged.json").read_text())["records"][OK_STSB] == "../b"


def _harness(record):
    return {**record, "harness": {**record["harness"], "epochs": 3}}


def _backbone(record):
    return {**record, "backbone": "bert-base-uncased"}


def _recipe(record):
    retrain = record["retrain"]
    return {**record, "retrain": {**retrain, "recipe": {"name": "authors"}}} if retrain else record


def _option(record):
    config = record["method_config"]
    return {**record, "method_config": {**config, "z": 50}} if record["method"] == "bipeft" else record


def _lr_grid(record):
    retrain = record["retrain"]
    return {**record, "retrain": {**retrain, "lr": 1e-3, "lr_grid": {"values": [1e-4, 1e-3]}}} if retrain else record


def _full_lr(record):  # full fine-tuning at its own default (2e-5) beside a run where --lr gave it 3e-4
    retrain = record["retrain"]
    return {**record, "retrain": {**retrain, "lr": 2e-5}} if retrain and record["method"] == "full" else record


@pytest.mark.parametrize("change, named", [
    (_harness, "harness epochs on glue/mrpc is None"), (_backbone, "backbone"), (_recipe, "retrain recipe"),
    (_option, "bipeft option z is 100"),
    (_lr_grid, "learning-rate protocol on glue/mrpc is 'lr 3e-4' in"),  # a record from before retrain.lr: its harness's
    (_lr_grid, "and 'lr grid {1e-4, 1e-3} by validation' in"),
    (_full_lr, "full learning-rate protocol on glue/mrpc is 'lr 3e-4' in")])
def test_runs_of_different_settings_are_refused_in_one_line(tmp_path, capsys, change, named):
    a, b = piece(tmp_path / "a", (0,)), piece(tmp_path / "b", (1,), change)
    sources = {a: snapshot(a), b: snapshot(b)}
    merged = tmp_path / "merged"
    assert main(["table", "--out", str(a), "--out", str(b), "--to", str(merged)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot merge: ") and named in err and "\n" not in err, err
    assert str(a.resolve()) in err and str(b.resolve()) in err
    assert not merged.exists() and not list(tmp_path.glob(".merged.*"))
    assert all(snapshot(folder) == before for folder, before in sources.items())


def test_tasks_may_differ_in_their_harness_and_the_merged_tables_are_the_whole_runs(tmp_path, whole):
    """A small task trained for more epochs in its own run merges beside the others (the paper's tasks
    differ so too): within each task every method still met one harness."""
    def on(task, change=None):
        return lambda record: (change(record) if change else record) if record["task"] == task else None

    def pick(out: Path, task: str, change=None) -> Path:
        piece(out, (0, 1, 2), on(task, change))
        return out

    a = pick(tmp_path / "mrpc", "glue/mrpc")
    b = pick(tmp_path / "stsb", "glue/stsb", lambda record: _harness(with_weights(record)))  # as whole's
    merged = tmp_path / "merged"
    assert main(["table", "--out", str(a), "--out", str(b), "--to", str(merged)]) == 0
    for name in TABLES:
        assert (merged / name).read_text() == (whole / name).read_text(), name
    assert "Friedman test over 2 tasks" in (merged / "comparison.md").read_text()

    def faster(record):  # every STS-B search and retrain at lr 1e-3, MRPC's at 3e-4
        retrain = record["retrain"] and {**record["retrain"], "lr": 1e-3}
        return {**record, "harness": {**record["harness"], "lr": 1e-3}, "retrain": retrain}

    c = pick(tmp_path / "stsb-lr", "glue/stsb", faster)
    assert main(["table", "--out", str(a), "--out", str(c), "--to", str(tmp_path / "lr")]) == 0


def test_a_merged_report_compares_with_the_first_searched_method_of_its_runs_plans(tmp_path):
    """Not with the first by run id (adalora before bipeft): a merged folder has no plan of its own."""
    a, b = piece(tmp_path / "a", (0,)), piece(tmp_path / "b", (1, 2))
    (b / "run.json").write_text(json.dumps({"methods": ["lora", "s3delta", "bipeft"]}))  # a has none
    merged = tmp_path / "merged"
    assert main(["table", "--out", str(a), "--out", str(b), "--to", str(merged)]) == 0
    assert "minus reference (s3delta)" in (merged / "comparison.md").read_text()
    again = tmp_path / "again"  # a merged report merged again: through its sources' plans
    assert main(["table", "--out", str(merged), "--out", str(a), "--to", str(again)]) == 0
    assert "minus reference (s3delta)" in (again / "comparison.md").read_text()
    assert main(["table", "--out", str(a)]) == 0  # a run without a plan: the first searched by run id
    assert "minus reference (autopeft)" in (a / "comparison.md").read_text()


def test_runs_that_differ_only_in_where_they_ran_or_how_often_they_saved_merge(tmp_path):
    def elsewhere(record):
        return {**record, "harness": {**record["harness"], "device": "cuda", "checkpoint_every": "500"}}

    a, b = piece(tmp_path / "a", (0,)), piece(tmp_path / "b", (1,), elsewhere)
    assert main(["table", "--out", str(a), "--out", str(b), "--to", str(tmp_path / "merged")]) == 0


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    a, b = piece(tmp_path / "a", (0,)), piece(tmp_path / "b", (1,))
    empty, busy = tmp_path / "empty", tmp_path / "busy"
    empty.mkdir()
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    invalid = tmp_path / "invalid" / "records"
    invalid.mkdir(parents=True)
    (invalid / "notes.json").write_text("{}")
    a_b = ["--out", str(a), "--out", str(b)]
    cases = [
        (["--out", str(a), "--out", str(empty), "--to", str(tmp_path / "m")], "holds no run"),
        (["--out", str(a), "--out", str(invalid.parent), "--to", str(tmp_path / "m")], "1 invalid record(s) in"),
        ([*a_b, "--to", str(a)], "is the run"),
        ([*a_b, "--to", str(a / "merged")], "is inside the run"),
        ([*a_b, "--to", str(tmp_path)], "holds the run"),
        ([*a_b, "--to", str(busy)], "not an earlier merged report"),
        (a_b, "add --to DIR"),
    ]
    before = snapshot(tmp_path)
    for argv, message in cases:
        assert main(["table", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and err.count("\n") == 0, (argv, err)
    assert snapshot(tmp_path) == before
