"""Every kind of searched method through the real stages: ``python -m suite run`` on Ray, tiny model."""

from __future__ import annotations

import json

import pytest

from spaces import build_space
from suite.backbones import backbone_sites
from suite.cli import main
from suite.records import validate_dir
from suite.rundir import load_records

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "48",
        "--max-eval-samples", "24", "--epochs", "1", "--seeds", "0"]


def budget_params(space: str, fraction_of_space: float) -> int:
    return int(build_space(space, backbone_sites("tiny-bert")).full_size() * fraction_of_space)


def test_one_shot_methods_search_then_retrain(tmp_path, ray_session):
    out = tmp_path / "run"
    budget = budget_params("s2", 0.05)
    assert main(["run", "--methods", "bipeft,s3delta,prunepeft", "--space", "s2", *TINY,
                 "--budget-params", str(budget), "--allow-step-cap", "--out", str(out)]) == 0
    records = {r["method"]: r for r in load_records(out)}
    assert set(records) == {"bipeft", "s3delta", "prunepeft"}
    for name, r in records.items():
        assert r["status"] == "ok", (name, r["error"])
        assert r["time"]["search_s"] > 0 and r["method_kind"] == "one-shot"
        assert 0 < r["params"]["peft"] <= budget and r["budget"]["params"] == budget
        assert r["architecture"]["space"] == "s2"
        assert r["search"]["peak_memory_mb"] > 0  # the efficiency table's search peak
    assert records["bipeft"]["search"]["stop_reason"] == "step_cap"  # 1 step of its 105: accepted, and marked
    accuracy = (out / "accuracy.md").read_text()
    assert any("BIPEFT" in line and "†" in line for line in accuracy.splitlines()) and "step cap" in accuracy
    assert list((out / "traces").glob("bipeft--*/*.csv")), "BIPEFT's trace CSV is missing"
    assert validate_dir(out) == []


@pytest.mark.parametrize("name, options", [
    ("autopeft", ["autopeft.candidates=4", "autopeft.n_init=2", "autopeft.q=2", "autopeft.random_pool=16",
                  "autopeft.max_evals=40", "autopeft.n_restarts=2", "autopeft.mc_samples=16", "autopeft.max_steps=2"]),
    ("apet", ["apet.candidates=3", "apet.max_concurrent=2", "apet.max_steps=2"]),
    ("optuna", ["optuna.candidates=4", "optuna.max_concurrent=2", "optuna.population_size=2", "optuna.max_steps=2"]),
])
def test_black_box_methods_run_their_searcher_as_trials(tmp_path, ray_session, name, options):
    out = tmp_path / "run"
    budget = budget_params("s1", 0.3)
    argv = ["run", "--methods", name, "--space", "s1", *TINY, "--budget-params", str(budget), "--out", str(out)]
    for option in options:
        argv += ["--method-option", option]
    assert main(argv) == 0
    (record,) = load_records(out)
    assert record["status"] == "ok", record["error"]
    n = int(options[0].split("=")[1])
    assert record["search"]["candidates"] == n
    assert 0 < record["params"]["peft"] <= budget
    assert record["search"]["peak_memory_mb"] > 0
    trials = list((out / "ray").glob(f"*/candidate-{record['run_id']}-*/result.json"))
    assert len(trials) == n  # one Ray trial per candidate
    for result in trials:
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        assert rows and "score" in rows[-1] and "param_ratio" in rows[-1]


def test_apet_single_draw_needs_no_proxy_training(tmp_path, ray_session):
    out = tmp_path / "run"
    budget = budget_params("s2", 0.1)
    assert main(["run", "--methods", "apet", *TINY, "--budget-params", str(budget), "--out", str(out)]) == 0
    (record,) = load_records(out)
    assert record["status"] == "ok" and record["search"]["candidates"] == 1
    assert not list((out / "ray").glob(f"*/candidate-{record['run_id']}-*"))
    assert 0.8 * budget <= record["params"]["peft"] <= budget


def test_interrupted_black_box_search_resumes_its_observations(tmp_path):
    """SIGINT an AutoPEFT search after two finished candidates; --resume finishes it without redoing them."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    out = tmp_path / "run"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    budget = budget_params("s1", 0.3)
    argv = [sys.executable, "-m", "suite", "run", "--methods", "autopeft", "--space", "s1", *TINY,
            "--budget-params", str(budget), "--cpus-per-trial", "2", "--out", str(out)]
    for option in ("candidates=6", "n_init=2", "q=1", "random_pool=16", "max_evals=40", "n_restarts=2",
                   "mc_samples=16", "max_steps=2"):
        argv += ["--method-option", f"autopeft.{option}"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def finished_trials() -> list:
        return [p for p in out.glob("ray/*/candidate-*/result.json") if p.read_text().strip()]

    deadline = time.time() + 600
    while time.time() < deadline and len(finished_trials()) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=300) == 130, "an interrupted run must stop, not go on to retrain a partial search"
    before = {p.parent.name: p.read_text() for p in finished_trials()}
    assert len(before) >= 2, "the search did not get two candidates in before the deadline"
    assert not list((out / "records").glob("*.json"))
    resumed = subprocess.run([sys.executable, "-m", "suite", "run", "--resume", "--out", str(out)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (record,) = load_records(out)
    assert record["status"] == "ok" and record["search"]["candidates"] == 6
    after = {p.parent.name: p.read_text() for p in finished_trials()}
    assert len(after) == 6  # six candidates in all: none redone, none lost
    for name, text in before.items():
        assert after[name] == text
