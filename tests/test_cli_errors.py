"""Runs that fail say so: bad input is one line and exit code 2 before Ray starts, with nothing
written; a run in which a job failed exits 1 with a one-line summary; records survive a killed writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import refused_before_ray

from suite.cli import main
from suite.records import validate_dir

FIXTURES = ROOT / "tests" / "fixtures"
TINY = ["--backbone", "tiny-bert", "--max-train-samples", "48", "--max-eval-samples", "24", "--epochs", "1"]


def data_copy(tmp_path: Path) -> Path:
    """A copy of the fixture task files to break."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "glue", data / "glue")
    return data


def one_line_error(capsys, argv: list[str], out: Path, message: str, ray_starts: bool = False) -> None:
    """``run ARGV --out OUT`` is refused with ``message`` in one line, exit 2, before Ray starts (unless
    ``ray_starts``: a check of the cluster itself) and with nothing written."""
    folder = next(p for p in (out, *out.parents) if p.is_dir())
    with refused_before_ray(folder, ray_starts):
        assert main(["run", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--methods", ","], "--methods is empty"),
    (["--methods", "lora", "--tasks", ""], "--tasks is empty"),
    (["--methods", "lora", "--seeds", ""], "--seeds is empty"),
    (["--methods", "lora", "--backbone", ""], "--backbone is empty"),
    (["--methods", "lora", "--scoring", "bogus", *TINY], "unknown scoring 'bogus'; valid: generate, label_tokens"),
    (["--methods", "bipeft", *TINY, "--method-option", "bipeft.code_compat=maybe"],
     "BIPEFTConfig.code_compat must be true or false, got 'maybe'"),
    (["--methods", "bipeft", *TINY, "--method-option", "bipeft.tau=high"], "BIPEFTConfig.tau must be a number"),
    (["--methods", "bipeft", *TINY, "--method-option", "bipeft.max_triggers=1.5"],
     "BIPEFTConfig.max_triggers must be an integer, got '1.5'"),
    (["--methods", "lora", *TINY, "--max-failures", "-1"], "--max-failures must be >= 0"),
    (["--methods", "lora", *TINY, "--checkpoint-every", "10x"],
     "checkpoint_every must be a number of steps (500), a time (90s, 10m, 1.5h) or off, got '10x'"),
    (["--methods", "apet", *TINY, "--method-option", "apet.scheduler=asha"],
     "scheduler='asha' needs candidates > 1 (one candidate is not proxy-trained), got candidates=1"),
    (["--methods", "autopeft", *TINY, "--method-option", "autopeft.scheduler=hyperband"],
     "unknown scheduler 'hyperband'; valid: fifo, asha"),
    (["--methods", "optuna", *TINY, "--method-option", "optuna.asha_reduction_factor=2"],
     "reduction_factor=2: only read with scheduler='asha', and scheduler is 'fifo'"),
    (["--methods", "bipeft", "--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--epochs", "1",
      "--max-train-samples", "48"], "bipeft needs at least 105 search steps on demo/rotten_tomatoes"),
])
def test_bad_input_is_one_line_before_ray(tmp_path, capsys, argv, message):
    one_line_error(capsys, argv, tmp_path / "run", message)


def test_boolean_options_take_true_false_1_0_only():
    from suite.inputs import parse_method_options

    assert parse_method_options(["bipeft.code_compat=False"]) == {"bipeft": {"code_compat": False}}
    assert parse_method_options(["bipeft.code_compat=0", "s3delta.hard_forward=TRUE"]) == {
        "bipeft": {"code_compat": False}, "s3delta": {"hard_forward": True}}
    assert parse_method_options(["bipeft.warmup_epochs=null", "bipeft.arch_betas=0.5,0.9"]) == {
        "bipeft": {"warmup_epochs": None, "arch_betas": (0.5, 0.9)}}


def test_data_problems_are_found_before_ray_with_file_and_line(tmp_path, capsys):
    data = data_copy(tmp_path)
    argv = ["--methods", "lora", *TINY, "--tasks", "glue/mrpc", "--data-dir", str(data)]
    (data / "glue" / "MRPC" / "dev.tsv").unlink()
    one_line_error(capsys, argv, tmp_path / "a", "missing file")
    shutil.copy(FIXTURES / "glue" / "MRPC" / "dev.tsv", data / "glue" / "MRPC" / "dev.tsv")
    train = data / "glue" / "MRPC" / "train.tsv"
    lines = train.read_text(encoding="utf-8-sig").splitlines()
    lines[3] = "only\ttwo"
    train.write_text("\n".join(lines) + "\n")
    one_line_error(capsys, argv, tmp_path / "b", f"malformed row in {train} at line 4")
    train.write_bytes(b"")
    one_line_error(capsys, argv, tmp_path / "c", "is empty")


def test_out_that_is_a_file_and_a_broken_plan_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(capsys, ["--methods", "lora", *TINY], blocker, "is a file: give a folder")
    one_line_error(capsys, ["--methods", "lora", *TINY], blocker / "run", "is under the file")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"methods": ["lora"], "spa')
    one_line_error(capsys, ["--resume"], run, "run.json is not a run plan: invalid JSON")
    (run / "run.json").write_text(json.dumps({"name": "something else"}))
    one_line_error(capsys, ["--resume"], run, "is not a run plan written by `python -m suite run`")


@pytest.mark.ray
def test_trials_larger_than_the_cluster_are_refused_before_any_stage(tmp_path, capsys, ray_session):
    out = tmp_path / "run"
    one_line_error(capsys, ["--methods", "lora", *TINY, "--tasks", "demo/rotten_tomatoes", "--cpus-per-trial", "64"],
                   out, "no node of the cluster can run a trial of 64 CPU(s)", ray_starts=True)
    one_line_error(capsys, ["--methods", "lora", *TINY, "--tasks", "demo/rotten_tomatoes", "--gpus-per-trial", "1"],
                   out, "and 1 GPU(s)", ray_starts=True)


@pytest.mark.ray
@pytest.mark.slow
def test_a_failed_job_makes_the_run_exit_1_with_a_summary(tmp_path, capsys, ray_session):
    out = tmp_path / "run"
    code = main(["run", "--methods", "s3delta,bitfit", *TINY, "--tasks", "demo/rotten_tomatoes", "--budget-params",
                 "3", "--max-failures", "0", "--allow-step-cap", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 of 2 jobs failed: s3delta--s2--demo_rotten_tomatoes--seed0--b3 (search failed: ValueError: the budget" \
        in captured.err
    assert list((out / "records").glob("*.json"))  # what finished is written
    assert "| BitFit" in captured.out and "wrote leaderboard.csv" in captured.out  # the tables, in the terminal
    accuracy = (out / "accuracy.md").read_text()
    assert "`s3delta--s2--demo_rotten_tomatoes--seed0--b3`: search failed: ValueError: the budget" in accuracy
    assert "\x1b[" not in accuracy and "Traceback" not in accuracy
    record = json.loads((out / "records" / "bitfit--manual--demo_rotten_tomatoes--seed0--bnone.json").read_text())
    assert record["retrain"]["attempts"] == 1 and record["retrain"]["placement"]["node_id"]
    failed = json.loads((out / "records" / "s3delta--s2--demo_rotten_tomatoes--seed0--b3.json").read_text())
    assert failed["search"]["attempts"] == 1  # --max-failures 0: no retry
    mode = (out / "records" / "bitfit--manual--demo_rotten_tomatoes--seed0--bnone.json").stat().st_mode & 0o777
    assert mode & 0o040  # readable by the group


@pytest.mark.ray
@pytest.mark.slow
def test_a_failing_trial_is_retried_once_by_default_then_recorded_as_failed(tmp_path, capsys, ray_session):
    out = tmp_path / "run"
    assert main(["run", "--methods", "s3delta", *TINY, "--tasks", "demo/rotten_tomatoes", "--budget-params", "3",
                 "--allow-step-cap", "--out", str(out)]) == 1  # no --max-failures: the default, 1
    assert "1 of 1 jobs failed" in capsys.readouterr().err
    (path,) = (out / "records").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and record["architecture"] is None
    assert record["error"].startswith("search failed: ValueError: the budget of 3 parameters is below the smallest")
    assert record["search"]["attempts"] == 2  # the first attempt and its one retry


@pytest.mark.ray
@pytest.mark.slow
def test_resume_removes_what_a_killed_writer_left(tmp_path, ray_session):
    out = tmp_path / "run"
    assert main(["run", "--methods", "lnfit", *TINY, "--tasks", "demo/rotten_tomatoes", "--out", str(out)]) == 0
    (record,) = (out / "records").glob("*.json")
    folders = ("records", "architectures", "search", "predictions", "weights")
    written = {p: p.read_bytes() for folder in folders for p in (out / folder).iterdir()}
    # what `kill -9` of a writer leaves: the temporary file of an atomic write whose rename never came
    leftovers = [out / folder / f".{record.stem}{suffix}.k9ll3d.tmp" for folder, suffix in (
        ("records", ".json"), ("architectures", ".json"), ("search", ".json"), ("predictions", ".jsonl.gz"))]
    for leftover in leftovers:
        leftover.write_text('{"half": ')
    assert main(["run", "--resume", "--out", str(out)]) == 0
    assert not [p for p in leftovers if p.exists()]
    assert {p: p.read_bytes() for folder in folders for p in (out / folder).iterdir()} == written  # untouched
    assert validate_dir(out) == []


# ---- issue 25: nothing twice, checked before Ray ------------------------------------------------------
DEMO = ["--methods", "lora", *TINY, "--tasks", "demo/rotten_tomatoes"]


def test_a_folder_held_by_another_command_is_refused_naming_it_and_its_process(tmp_path, capsys):
    import signal

    from test_rundir import hold_lock

    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        # no run.json yet: the lock, not the "already holds a run" check, stops the second command
        one_line_error(capsys, DEMO, out, f"error: {out} is in use by another command (process id {holder.pid}")
        (out / "run.json").write_text("{}")
        one_line_error(capsys, ["--resume"], out, f"(process id {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    one_line_error(capsys, DEMO, out, f"{out} already holds a run: add --resume")  # after the lock: no stale one


@pytest.mark.parametrize("option, values, jobs, note", [
    ("--methods", "lora,bitfit,lora", 2, "note: --methods repeats lora; each job runs once"),
    ("--seeds", "0,1,0", 2, "note: --seeds repeats 0; each job runs once"),
    ("--tasks", "demo/rotten_tomatoes,demo/rotten_tomatoes", 1,
     "note: --tasks repeats demo/rotten_tomatoes; each job runs once"),
    ("--budget", "1e-3,0.001,0.0010000001", 1,  # the third is the same number of parameters on tiny-bert
     "note: --budget repeats 0.001, 0.0010000001 (the same as 0.001 here); each job runs once"),
])
def test_a_value_given_twice_in_a_list_option_plans_its_jobs_once(capsys, option, values, jobs, note):
    from suite.cli import build_parser
    from suite.inputs import make_plan

    argv = {"--methods": "apet" if option == "--budget" else "lora", "--tasks": "demo/rotten_tomatoes",
            "--seeds": "0", option: values}
    args = build_parser().parse_args(["run", *[x for kv in argv.items() for x in kv], *TINY])
    run_ids = [job.run_id for job in make_plan(args).jobs()]
    assert len(run_ids) == len(set(run_ids)) == jobs
    assert capsys.readouterr().err.strip() == note


def test_storage_is_checked_before_ray_and_nothing_is_left(tmp_path, capsys, monkeypatch):
    import tempfile

    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "run"
    for storage, message in [
        ("ray-storage", "--storage ray-storage is relative: give an absolute folder"),
        (str(blocker / "ray"), f"--storage {blocker / 'ray'} is under the file {blocker}: give a folder"),
        ("nosuch://bucket/x", "--storage nosuch://bucket/x: pyarrow cannot open it (Unrecognized filesystem type"),
    ]:
        one_line_error(capsys, [*DEMO, "--storage", storage], out, message)
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # as a folder without write permission (tests may run as root)
        if dir is not None and Path(dir) == tmp_path / "shared":
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "shared").mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    one_line_error(capsys, [*DEMO, "--storage", str(tmp_path / "shared" / "ray")], out,
                   f"cannot write in {tmp_path / 'shared'} (Permission denied)")
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--max-source-length", "513"], "--max-source-length 513 is beyond what tiny-bert reads (512 positions); "
                                     "give at most 512"),
    (["--seeds", "99999999999999999999999"], "--seeds takes integers from 0 to 4294967295 (what numpy's seeding "
                                             "accepts), got 99999999999999999999999"),
    (["--seeds", "0,-1"], "--seeds takes integers from 0 to 4294967295"),
])
def test_values_the_backbone_or_numpy_cannot_take_are_one_line(tmp_path, capsys, argv, message):
    one_line_error(capsys, [*DEMO, *argv], tmp_path / "run", message)


def test_a_plugin_that_raises_on_import_is_one_line_and_its_traceback_with_verbose(tmp_path, capsys, monkeypatch):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "raising_plugin_i25.py").write_text("raise RuntimeError('no licence key set')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    message = "plugin module 'raising_plugin_i25' raised RuntimeError on import: no licence key set"
    one_line_error(capsys, [*DEMO, "--plugin", "raising_plugin_i25"], tmp_path / "run", message)
    with refused_before_ray(tmp_path):
        assert main(["run", *DEMO, "--plugin", "raising_plugin_i25", "--verbose", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raising_plugin_i25.py", line 1' in err and err.endswith(f"error: {message}\n")


def test_a_backbone_that_is_a_file_says_a_folder_is_wanted(tmp_path, capsys):
    config = tmp_path / "model" / "config.json"
    config.parent.mkdir()
    config.write_text("{}")
    one_line_error(capsys, [*DEMO[:1], "lora", "--backbone", str(config)], tmp_path / "run",
                   f"backbone {config} is a file: give the folder that holds its config.json")


@pytest.mark.ray
@pytest.mark.slow
def test_a_record_that_cannot_be_written_ends_the_run_with_the_summary_and_resume_finishes(
        tmp_path, capsys, monkeypatch, ray_session):
    import tempfile

    out = tmp_path / "run"
    real, written = tempfile.mkstemp, []

    def read_only_after_one(*args, dir=None, **kwargs):  # records/ turns read-only once it holds a record
        if dir is not None and Path(dir) == out / "records":
            if written:
                raise PermissionError(13, "Permission denied", str(dir))
            written.append(dir)
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_after_one)
    assert main(["run", "--methods", "lora,bitfit", *TINY, "--tasks", "demo/rotten_tomatoes", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (kept,) = (out / "records").glob("*.json")
    lost = ({"lora", "bitfit"} - {kept.name.split("--")[0]}).pop()
    assert err.splitlines()[-1] == (
        f"1 of 2 jobs failed: {lost}--manual--demo_rotten_tomatoes--seed0--bnone (not recorded: Permission denied: "
        f"cannot write {out}/records/{lost}--manual--demo_rotten_tomatoes--seed0--bnone.json); see {out}/records/")
    monkeypatch.setattr(tempfile, "mkstemp", real)
    kept_bytes = kept.read_bytes()
    assert main(["run", "--resume", "--out", str(out)]) == 0
    assert len(list((out / "records").glob("*.json"))) == 2 and kept.read_bytes() == kept_bytes
    assert validate_dir(out) == []


@pytest.mark.parametrize("argv, message", [
    (["--lr", "fast"], "--lr takes a learning rate, a number in (0, 1) such as 3e-4, got 'fast'"),
    (["--lr", "0"], "--lr must be a learning rate in (0, 1) such as 3e-4, got 0"),
    (["--lr", "nan"], "--lr must be a learning rate in (0, 1) such as 3e-4, got nan"),
    (["--lr", "2"], "--lr must be a learning rate in (0, 1) such as 3e-4, got 2"),
    (["--lr-grid", "1e-4,x"], "--lr-grid takes a learning rate, a number in (0, 1) such as 3e-4, got 'x'"),
    (["--lr-grid", "1e-4,-1e-3"], "--lr-grid must be a learning rate in (0, 1) such as 3e-4, got -1e-3"),
    (["--lr-grid", "3e-4"], "--lr-grid takes two or more learning rates (e.g. 1e-4,3e-4,1e-3), got '3e-4'; "
                            "for one, give --lr"),
    (["--lr-grid", ","], "--lr-grid takes two or more learning rates"),
    (["--lr-grid", "1e-4,1e-4"], "--lr-grid takes two or more learning rates (e.g. 1e-4,3e-4,1e-3), got '1e-4,1e-4'"),
    (["--lr", "1e-3", "--lr-grid", "1e-4,0"], "--lr-grid must be a learning rate in (0, 1) such as 3e-4, got 0"),
])
def test_bad_learning_rates_are_one_line_before_ray(tmp_path, capsys, argv, message):
    one_line_error(capsys, [*DEMO, *argv], tmp_path / "run", message)


def test_a_resumed_run_keeps_its_learning_rates(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    for option in ("--lr", "--lr-grid"):
        one_line_error(capsys, ["--resume", option, "1e-4,1e-3"], out, f"drop {option}")


def test_the_command_lines_choices_are_their_owners():
    """The parser names its choices literally (``--help`` imports neither torch nor the report); each
    list must be the one its owner checks, or a valid value would be refused, or an invalid one pass."""
    from core.training import PRECISIONS
    from suite.cli import build_parser
    from suite.export import FORMATS
    from suite.recipe import RECIPES
    from suite.report.reported import REPORTED
    from suite.report.stats import INTERVALS

    def choices(command: str, option: str) -> tuple:
        sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
        return tuple(next(a for a in sub._actions if option in a.option_strings).choices)

    assert choices("run", "--precision") == PRECISIONS and choices("run", "--retrain-recipe") == RECIPES
    assert choices("table", "--paired-interval") == INTERVALS and choices("table", "--reported") == REPORTED
    assert choices("export", "--format") == FORMATS
