"""The run folder has one owner (``suite.rundir``): a real run writes only the paths it names, and
every JSON file of a run is read by one reader whose error names the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT

from suite.outcomes import SearchOutcome
from suite.rundir import (
    LOG_FILE,
    PER_JOB,
    PLAN_FILE,
    RAY_DIR,
    REPORTS,
    TRACES,
    RunDir,
    RunFileError,
    entry,
    load_records,
    read_json,
)


def named_paths(run_ids: list[str]) -> set[Path]:
    """Every path the run folder's owner names for these jobs (relative to the run folder)."""
    paths = {Path(PLAN_FILE), Path(LOG_FILE), Path(RAY_DIR), *map(Path, REPORTS), *map(Path, PER_JOB)}
    return paths | {entry(folder, run_id) for folder in PER_JOB for run_id in run_ids}


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_writes_only_the_paths_the_run_folder_names(tmp_path, ray_session):
    from spaces import build_space
    from suite.backbones import backbone_sites
    from suite.cli import main

    out = tmp_path / "run"
    budget = int(build_space("s2", backbone_sites("tiny-bert")).full_size() * 0.05)
    assert main(["run", "--methods", "bipeft,bitfit", "--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes",
                 "--max-train-samples", "48", "--max-eval-samples", "24", "--epochs", "1", "--budget-params",
                 str(budget), "--allow-step-cap", "--out", str(out)]) == 0
    records = load_records(out)
    run_ids = [r["run_id"] for r in records]
    assert len(run_ids) == 2 and all(r["status"] == "ok" for r in records)
    named = named_paths(run_ids)
    written = {p.relative_to(out) for p in out.rglob("*")}
    inside_ray = {p for p in written if p.parts[0] == RAY_DIR and len(p.parts) > 1}  # Ray Tune's own
    inside_traces = {p for p in written if p.parts[0] == TRACES and len(p.parts) > 2}  # core.trace's files
    assert written - inside_ray - inside_traces <= named, sorted(written - inside_ray - inside_traces - named)
    # every kind of entry was written, so the check above covered each
    for folder in PER_JOB:
        assert (out / folder).is_dir(), folder
    for name in (PLAN_FILE, LOG_FILE, RAY_DIR, "accuracy.md", "report.html"):
        assert (out / name).exists(), name
    for record in records:  # what a record points to is where the owner says
        for key, info in record["files"].items():
            assert Path(info["path"]) == entry(key, record["run_id"])
    (bipeft,) = [r for r in records if r["method"] == "bipeft"]
    trace = Path(bipeft["search"]["trace_dir"])
    assert trace == entry(TRACES, bipeft["run_id"])
    assert {p.relative_to(trace) for p in inside_traces} == {
        Path(v) for k, v in bipeft["search"].items() if k.startswith("trace_") and k != "trace_dir"}


@pytest.mark.parametrize("text", ['{"run_id": ', "", '{"a": [1, 2'])
def test_a_truncated_file_is_an_error_that_names_it(tmp_path, text):
    path = tmp_path / "cut.json"
    path.write_text(text)
    with pytest.raises(RunFileError, match="cut short") as info:
        read_json(path, "a record")
    assert str(info.value).startswith(f"{path} is not a record: invalid JSON (")
    assert "Expecting" in str(info.value)  # json's own reason, after the file's name


def test_every_json_read_of_a_run_folder_names_a_truncated_file(tmp_path):
    from suite.plan import Plan

    run = RunDir(tmp_path)
    run.records.mkdir()
    run.record("a").write_text('{"run_id": "a"}')
    run.record("b").write_text('{"run_id": ')
    with pytest.raises(RunFileError, match=re.escape(f"{run.record('b')} is not a record")):
        load_records(tmp_path)
    run.plan.write_text('{"methods": ')
    with pytest.raises(RunFileError, match=re.escape(f"{run.plan} is not a run plan")):
        Plan.load(tmp_path)
    run.save_search("a", SearchOutcome({"space": "s2"}, 1.5, {"steps": 3}))
    assert run.load_search("a") == SearchOutcome({"space": "s2"}, 1.5, {"steps": 3})
    run.path("search", "a").write_text('{"search_s": 1.5, "sea')
    with pytest.raises(RunFileError, match=re.escape(f"{run.path('search', 'a')} is not a search's facts")):
        run.load_search("a")
    assert run.load_search("never-searched") is None


def test_a_search_saved_by_an_older_run_without_its_facts_loads(tmp_path):
    run = RunDir(tmp_path)
    run.path("architectures", "a").parent.mkdir()
    run.path("architectures", "a").write_text(json.dumps({"space": "s2"}))
    assert run.load_search("a") == SearchOutcome({"space": "s2"}, None, {})


def test_the_owner_names_every_report_and_cleans_every_leftover(tmp_path):
    run = RunDir(tmp_path)
    assert run.report("accuracy.md") == tmp_path / "accuracy.md"
    with pytest.raises(ValueError, match="'notes.md' is not a report of the run folder; valid: leaderboard.csv"):
        run.report("notes.md")
    leftovers = [tmp_path / f".{PLAN_FILE}.x1.tmp"] + [tmp_path / f / ".a.json.x2.tmp" for f in PER_JOB if f != TRACES]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_text("{")
    kept = tmp_path / "records" / "a.json"
    kept.write_text("{}")
    run.clean_leftovers()
    assert not any(p.exists() for p in leftovers) and kept.exists()


# ---- one command per folder: the run lock -----------------------------------------------------------
HOLD = "import sys; from suite.rundir import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); " \
       "sys.stdin.read()"


def hold_lock(folder: Path):
    """A process that holds ``folder``'s lock until it is killed (or its stdin closes)."""
    import os
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_folder_is_refused_naming_its_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    import os
    import signal

    from suite.rundir import LOCK_FILE, RunBusyError, RunLock

    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        assert (out / LOCK_FILE).read_text().strip() == str(holder.pid)
        before = {p: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(RunBusyError, match=re.escape(f"{out} is in use by another command (process id "
                                                         f"{holder.pid}")):
            RunLock(out).acquire()
        assert {p: p.read_bytes() for p in out.iterdir()} == before  # the refused command wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_FILE).exists()  # kill -9 leaves the file, but the kernel dropped the lock
    with RunLock(out) as lock:
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
        assert lock.path == out / LOCK_FILE
    assert not (out / LOCK_FILE).exists()  # released: removed


def test_a_refused_lock_leaves_no_folder_and_a_new_run_needs_an_empty_one(tmp_path):
    from suite.rundir import RunBusyError, RunLock

    fresh = tmp_path / "new" / "deeper"
    with RunLock(fresh):
        assert fresh.is_dir()
    assert not (tmp_path / "new").exists()  # made by the lock and left empty: removed again
    out = tmp_path / "run"
    out.mkdir()
    RunDir(out).plan.write_text("{}")
    with pytest.raises(RunBusyError, match=re.escape(f"{out} already holds a run: add --resume")):
        RunLock(out, new_run=True).acquire()
    assert sorted(p.name for p in out.iterdir()) == [PLAN_FILE]


def test_a_file_that_cannot_be_written_is_an_error_that_names_it(tmp_path):
    from suite.rundir import RunWriteError, write_error_in, write_json_atomic

    (tmp_path / "records").write_text("a file where a folder should be")
    target = tmp_path / "records" / "a.json"
    with pytest.raises(RunWriteError, match=re.escape(f"cannot write {target}")) as info:
        write_json_atomic(target, {"a": 1})
    try:  # as Ray Tune re-raises a callback's error: a TuneError raised while handling it
        try:
            raise info.value
        except RunWriteError:
            raise RuntimeError("a TuneError with the traceback as its text")  # noqa: B904
    except RuntimeError as wrapped:
        assert write_error_in(wrapped) is info.value
    assert write_error_in(RuntimeError("unrelated")) is None
