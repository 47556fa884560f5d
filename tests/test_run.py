"""``python -m suite run`` end to end on Ray with a tiny model, resume, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import refused_before_ray

from suite.cli import main
from suite.recipe import SUITE_OP_OPTIONS
from suite.records import validate_dir
from suite.rundir import load_records

TINY = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "48",
        "--max-eval-samples", "24", "--epochs", "1"]


@pytest.mark.ray
@pytest.mark.slow
def test_run_two_manual_baselines_writes_every_output(tmp_path, ray_session, capsys):
    out = tmp_path / "run"
    assert main(["run", "--methods", "lora,bitfit", *TINY, "--seeds", "0", "--out", str(out)]) == 0
    records = load_records(out)
    assert sorted(r["method"] for r in records) == ["bitfit", "lora"]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert validate_dir(out) == []
    for r in records:
        assert r["params"]["peft"] > 0 and r["params"]["head"] == 66
        assert set(r["metrics"]["test"]) == {"accuracy"} and r["time"]["retrain_s"] > 0
        assert (out / "architectures" / f"{r['run_id']}.json").is_file()
        assert r["retrain"]["recipe"] == {"name": "suite", "op_options": SUITE_OP_OPTIONS}  # the one recipe
        assert r["harness"]["checkpoint_every"] == "10m" and r["retrain"]["resumed_at"] == []  # the default
        assert set(r["files"]) == {"weights", "predictions"} and (out / r["files"]["weights"]["path"]).is_file()
    for name in ("run.json", "leaderboard.csv", "summary.csv", "accuracy.md", "efficiency.md"):
        assert (out / name).is_file(), name
    assert not (out / "budget.png").exists()  # one budget only
    printed = capsys.readouterr().out
    assert "records in" in printed


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_scored_on_one_example_per_split_exits_0_with_no_interval(tmp_path, ray_session, capsys):
    out = tmp_path / "run"
    argv = [*TINY[:TINY.index("--max-eval-samples")], "--max-eval-samples", "1", "--epochs", "1"]
    assert main(["run", "--methods", "lora,bitfit", *argv, "--out", str(out)]) == 0
    assert capsys.readouterr().out.count(" [–] |") == 2  # the tables, printed at the end
    accuracy = (out / "accuracy.md").read_text()
    assert accuracy.count(" [–] |") == 2 and "`[–]`: no interval" in accuracy


@pytest.mark.ray
@pytest.mark.slow
def test_resume_redoes_nothing_finished(tmp_path, ray_session):
    out = tmp_path / "run"
    assert main(["run", "--methods", "lnfit", *TINY, "--seeds", "0,1", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    assert len(before) == 2
    removed = sorted(before)[0]
    (out / "records" / removed).unlink()  # as if the run had stopped before writing it
    assert main(["run", "--resume", "--out", str(out)]) == 0
    after = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    assert set(after) == set(before)
    kept = sorted(before)[1]
    assert after[kept] == before[kept]  # the finished job was not redone


@pytest.mark.ray
@pytest.mark.slow
def test_no_save_weights_keeps_the_predictions_and_no_weights_anywhere(tmp_path, ray_session):
    out = tmp_path / "run"
    assert main(["run", "--methods", "lnfit", *TINY, "--seeds", "0", "--no-save-weights", "--out", str(out)]) == 0
    (record,) = load_records(out)
    assert record["status"] == "ok" and set(record["files"]) == {"predictions"}
    assert (out / record["files"]["predictions"]["path"]).is_file()
    assert not list(out.rglob("*.safetensors"))  # neither beside the record nor in Ray's checkpoints


@pytest.mark.ray
@pytest.mark.slow
def test_full_fine_tuning_trains_at_its_own_default_learning_rate_and_its_row_says_so(tmp_path, ray_session):
    out = tmp_path / "run"
    assert main(["run", "--methods", "lnfit,full", *TINY, "--out", str(out)]) == 0
    records = {r["method"]: r for r in load_records(out)}
    assert all(r["status"] == "ok" and "lr" not in r["harness"] for r in records.values())  # the run's: 3e-4
    assert records["lnfit"]["retrain"]["lr"] == 3e-4 and records["full"]["retrain"]["lr"] == 2e-5
    assert json.loads((out / "run.json").read_text())["full_lr"] == 2e-5  # the plan keeps what it resolved
    accuracy = (out / "accuracy.md").read_text()
    assert "| Fine-tune (lr 2e-5) |" in accuracy.replace("  ", "") and "| LNFit |" in accuracy.replace("  ", "")


@pytest.mark.ray
@pytest.mark.slow
def test_an_lr_grid_retrains_every_method_at_each_rate_and_the_best_validation_picks(tmp_path, ray_session):
    out = tmp_path / "run"
    assert main(["run", "--methods", "lnfit,full", *TINY, "--lr-grid", "1e-2,1e-4", "--lr", "5e-4",
                 "--out", str(out)]) == 0
    records = load_records(out)
    assert sorted(r["method"] for r in records) == ["full", "lnfit"] and validate_dir(out) == []  # one per job
    for r in records:
        assert r["harness"]["lr"] == 5e-4  # the run's --lr (its searches'), recorded beside the grid
        grid, selection = r["retrain"]["lr_grid"], r["metrics"]["selection"]
        scores = {t["lr"]: t["validation"][selection] for t in grid["trials"]}
        assert list(scores) == [1e-4, 1e-2]  # the same grid for every method, full fine-tuning's too
        chosen = max(scores, key=scores.get)  # the first of equal scores: the smaller rate
        assert grid["chosen"] == r["retrain"]["lr"] == chosen
        assert r["metrics"]["validation"] == next(t["validation"] for t in grid["trials"] if t["lr"] == chosen)
        assert all("test" not in t for t in grid["trials"]) and (out / r["files"]["weights"]["path"]).is_file()
    trials = [p.name for p in (out / "ray").glob("*/retrain-*") if p.is_dir()]
    assert len(trials) == 4 and sum("-lr1e-2-" in name for name in trials) == 2, trials  # one Ray trial per rate
    assert not (out / "lr_trials").exists()
    assert "Learning rate: lr grid {1e-4, 1e-2} by validation" in (out / "accuracy.md").read_text()


@pytest.mark.ray
@pytest.mark.slow
def test_interrupted_run_resumes_without_losing_or_duplicating(tmp_path):
    """Interrupt a real run (SIGINT) after its first record, resume it, and compare."""
    out = tmp_path / "run"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "suite", "run", "--methods", "lnfit,bitfit,lora", *TINY, "--seeds", "0",
            "--cpus-per-trial", "2", "--out", str(out)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not list((out / "records").glob("*.json")):
        time.sleep(0.5)
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before it could be interrupted"
    first = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=300) == 130, "an interrupted run must stop with exit code 130"
    assert first, "no record appeared before the deadline"
    resumed = subprocess.run([sys.executable, "-m", "suite", "run", "--resume", "--out", str(out)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = load_records(out)
    assert sorted(r["method"] for r in records) == ["bitfit", "lnfit", "lora"]
    assert all(r["status"] == "ok" for r in records)
    for name, data in first.items():  # what was finished before the interruption is untouched
        assert (out / "records" / name).read_bytes() == data


@pytest.mark.parametrize("argv, message", [
    (["--methods", "lorra"], "unknown method 'lorra'. Did you mean: lora"),
    (["--methods", "lora", "--tasks", "glue/colaa"], "unknown task"),
    (["--methods", "bipeft", "--space", "s3"], "unknown space 's3'"),
    (["--methods", "lora", "--seeds", "0,one"], "--seeds takes comma-separated integers"),
    (["--methods", "lora", "--budget", "0"], "--budget must be a fraction > 0"),
    (["--methods", "lora", "--data-dir", "/nonexistent/dir"], "is not a directory"),
    (["--methods", "lora", "--backbone", "./no/such/model"], "does not exist"),
    (["--methods", "lora", "--epochs", "2", "--max-steps", "3"], "either --epochs or --max-steps"),
    (["--methods", "lora", "--method-option", "lora.rank=4"], "takes no options"),
])
def test_run_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    with refused_before_ray(tmp_path):  # nothing half-written
        assert main(["run", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_budget_larger_than_the_space_is_an_error(tmp_path, capsys):
    out = tmp_path / "run"
    with refused_before_ray(tmp_path):
        assert main(["run", "--methods", "bipeft", "--backbone", "tiny-bert", "--budget", "0.5", "--out", str(out)]) == 2
    assert "larger than the whole s2 space" in capsys.readouterr().err


def test_resume_on_a_folder_without_a_run(tmp_path, capsys):
    with refused_before_ray(tmp_path):
        assert main(["run", "--resume", "--out", str(tmp_path)]) == 2
        assert "holds no run" in capsys.readouterr().err
        assert main(["run", "--resume", "--methods", "lora", "--out", str(tmp_path)]) == 2
        assert "drop --methods" in capsys.readouterr().err


def test_plan_round_trip(tmp_path):
    from suite.harness import HarnessConfig
    from suite.plan import Plan

    plan = Plan(methods=("lora", "bipeft"), space="s2", tasks=("glue/rte",), backbone="tiny-bert", seeds=(0, 1),
                   budgets=(1e-3, 2e-3), backbone_params=1000, harness=HarnessConfig(epochs=1))
    plan.save(tmp_path)
    again = Plan.load(tmp_path)
    assert again == plan
    jobs = again.jobs()
    assert len(jobs) == 1 * 2 + 1 * 2 * 2  # manual: no budget; bipeft: two budgets
    assert len({j.run_id for j in jobs}) == len(jobs)
    assert json.loads((tmp_path / "run.json").read_text())["methods"] == ["lora", "bipeft"]
    assert Path(tmp_path / "run.json").is_file()


def test_the_offline_default_lets_bipeft_reach_its_triggers_at_budget_1e_3():
    """The first command users run: a budget near BitFit's size (the paper's 1.39e-4 would be 3,157
    parameters on MiniLM), and enough search steps for BIPEFT's warm-up + H + Z without a step cap."""
    from suite.cli import build_parser
    from suite.inputs import make_plan
    from suite.plan import planned_search_steps

    plan = make_plan(build_parser().parse_args(["run", "--methods", "bipeft,s3delta"]))
    assert plan.budgets == (1e-3,) and plan.backbone == "all-MiniLM-L6-v2"
    assert plan.jobs()[0].budget_params == 22713
    per_epoch, steps = planned_search_steps(plan, "demo/rotten_tomatoes", 8530)
    assert steps >= plan.method("bipeft").min_steps(per_epoch) == 105
    named = make_plan(build_parser().parse_args(["run", "--methods", "lora", "--backbone", "tiny-bert"]))
    assert named.budgets == (1.39e-4,) and named.harness.batch_size is None  # the paper's budget, the task's batch


def test_ls_options_lists_every_method_option_with_its_default(capsys):
    from methods import get_method

    assert main(["ls", "options", "bipeft"]) == 0
    out = capsys.readouterr().out
    config = get_method("bipeft").config
    assert f"bipeft.max_triggers={config.max_triggers!r}" in out and f"bipeft.tau={config.tau!r}" in out
    assert main(["ls", "options", "lorra"]) == 2
    assert "Did you mean: lora" in capsys.readouterr().err


def test_a_plan_saved_before_its_absolute_budget_was_named_so_resumes(tmp_path):
    """A ``run.json`` of an earlier version: ``budget_params`` for the plan's one absolute budget, and
    the harness as a dict of overrides."""
    from suite.plan import Plan

    saved = {"methods": ["bipeft"], "space": "s2", "tasks": ["glue/rte"], "backbone": "tiny-bert", "seeds": [0],
             "budgets": [], "budget_params": 3000, "harness": {"epochs": 1, "max_train_samples": 48},
             "backbone_params": 1000}
    (tmp_path / "run.json").write_text(json.dumps(saved))
    plan = Plan.load(tmp_path)
    assert plan.absolute_budget == 3000 and [j.budget_params for j in plan.jobs()] == [3000]
    assert plan.harness.epochs == 1 and plan.harness.max_train_samples == 48
    assert plan.harness_overrides() == {"epochs": 1, "max_train_samples": 48}
