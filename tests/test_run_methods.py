"""Every kind of searched method through the real stages: ``python -m suite run`` on Ray, tiny model."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT

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


ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}


def interrupt(argv: list[str], ready, out) -> None:
    """Start the run of ``argv``, SIGINT it once ``ready(lines)`` (``lines``: what it printed so far; or
    after 10 minutes): it stops, records nothing."""
    proc = subprocess.Popen(argv, cwd=ROOT, env={**ENV, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # as they come: a pipe, read line by line
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + 600
    while time.time() < deadline and not ready(lines):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=300) == 130, "an interrupted run must stop, not go on to retrain a partial search"
    assert not list((out / "records").glob("*.json"))


def resume(out) -> dict:
    """``run --resume`` of the run in ``out``: its one record."""
    resumed = subprocess.run([sys.executable, "-m", "suite", "run", "--resume", "--out", str(out)], cwd=ROOT,
                             env=ENV, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (record,) = load_records(out)
    return record


def test_interrupted_black_box_search_resumes_its_observations(tmp_path):
    """SIGINT an AutoPEFT search after two finished candidates; --resume finishes it without redoing them."""
    out = tmp_path / "run"
    budget = budget_params("s1", 0.3)
    argv = [sys.executable, "-m", "suite", "run", "--methods", "autopeft", "--space", "s1", *TINY,
            "--budget-params", str(budget), "--cpus-per-trial", "2", "--out", str(out)]
    for option in ("candidates=6", "n_init=2", "q=1", "random_pool=16", "max_evals=40", "n_restarts=2",
                   "mc_samples=16", "max_steps=2"):
        argv += ["--method-option", f"autopeft.{option}"]

    def finished_trials() -> list:
        return [p for p in out.glob("ray/*/candidate-*/result.json") if p.read_text().strip()]

    # the run prints a line as each candidate ends; its result file may be written later (Ray syncs them),
    # and waiting for two files let the whole search end first on a fast machine
    interrupt(argv, lambda lines: sum(line.startswith("[candidate] ") for line in lines) >= 2, out)
    before = {p.parent.name: p.read_text() for p in finished_trials()}
    assert len(before) >= 2, "the search did not get two candidates in before the deadline"
    record = resume(out)
    assert record["status"] == "ok" and record["search"]["candidates"] == 6
    after = {p.parent.name: p.read_text() for p in finished_trials()}
    assert len(after) == 6  # six candidates in all: none redone, none lost
    for name, text in before.items():
        assert after[name] == text


# ---- multi-fidelity: a job's candidates under ASHA ---------------------------------------------------
def write_stsb(data_dir) -> None:
    """Made-up STS-B files (the GLUE layout): a regression task, whose Pearson score differs from one
    candidate to the next even on tiny-bert, so that rungs have something to rank."""
    import random

    words = ("movie", "film", "plot", "actor", "scene", "story", "music", "great", "awful", "dull", "bright")
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    folder = data_dir / "glue" / "STS-B"
    folder.mkdir(parents=True)
    for split, n, seed in (("train", 96, 0), ("dev", 48, 1)):
        rng = random.Random(seed)
        rows = [f"{i}\tmain\tx\t2012\t{i:04d}\tnone\tnone\t{' '.join(rng.choices(words, k=6))}\t"
                f"{' '.join(rng.choices(words, k=6))}\t{rng.uniform(0, 5):.3f}\n" for i in range(n)]
        (folder / f"{split}.tsv").write_text(header + "".join(rows))


STSB = ["--backbone", "tiny-bert", "--tasks", "glue/stsb", "--space", "s2", "--max-eval-samples", "24",
        "--epochs", "1", "--seeds", "0", "--budget-params", "3000"]
# APET: best of 6 draws, one at a time (so ASHA's verdicts do not depend on timing), 3 validation rounds each
APET_ASHA = ["apet.candidates=6", "apet.eval_every=1", "apet.scheduler=asha"]


def options(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--method-option", setting)]


def test_asha_stops_weak_candidates_of_its_own_job_only(tmp_path, ray_session):
    write_stsb(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["run", "--methods", "lora,apet,optuna", *STSB, "--data-dir", str(tmp_path / "data"), "--out", str(out),
                 *options(*APET_ASHA, "optuna.candidates=4", "optuna.max_concurrent=2", "optuna.population_size=2",
                          "optuna.eval_every=1")]) == 0
    records = {r["method"]: r for r in load_records(out)}
    assert {name: r["status"] for name, r in records.items()} == {"lora": "ok", "apet": "ok", "optuna": "ok"}
    apet, optuna = records["apet"]["search"], records["optuna"]["search"]
    assert apet["scheduler"] == "asha" and len(apet["rungs"]) == 6
    stopped = [r for r in apet["rungs"] if r["stopped_early"]]
    assert 0 < len(stopped) < 6 and apet["stopped_early"] == len(stopped)
    for rung in apet["rungs"]:  # every candidate, stopped or not, ends with a score its searcher saw
        assert rung["steps"] == 3 and rung["round"] == rung["step"] and math.isfinite(rung["score"])
        assert rung["stopped_early"] == (rung["step"] < 3)
        rows = candidate_rows(out, records["apet"]["run_id"], rung["index"])
        assert [row["training_iteration"] for row in rows] == list(range(1, rung["round"] + 1))
        assert all("score" in row and "param_ratio" in row for row in rows)  # the scheduler's metric at every rung
    # another black-box job's candidates and a manual retrain are never stopped
    assert optuna["scheduler"] == "fifo" and optuna["stopped_early"] == 0
    assert [r["step"] for r in optuna["rungs"]] == [3] * 4
    retrain = records["lora"]["retrain"]
    assert retrain["steps"] == retrain["history"][-1]["total"]
    accuracy = (out / "accuracy.md").read_text()
    assert "best of 6, ASHA)" in accuracy
    assert not any("Optuna" in line and "ASHA" in line for line in accuracy.splitlines())


def candidate_rows(out, run_id: str, index: int) -> list[dict]:
    (result,) = out.glob(f"ray/*/candidate-{run_id}-{index}-*/result.json")
    return [json.loads(line) for line in result.read_text().splitlines() if line.strip()]


def test_an_interrupted_asha_search_resumes_its_rungs(tmp_path):
    """SIGINT an APET search under ASHA while its third candidate trains; --resume finishes it, and the
    job's rungs, saved with the run's searcher, hold every candidate's verdict, before and after."""
    import pickle

    write_stsb(tmp_path / "data")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "suite", "run", "--methods", "apet", *STSB, "--data-dir", str(tmp_path / "data"),
            "--out", str(out), *options(*APET_ASHA)]
    # one at a time: once two candidates have ended (the run prints a line for each), the third trains
    interrupt(argv, lambda lines: sum(line.startswith("[candidate] ") for line in lines) >= 2, out)
    record = resume(out)
    assert record["status"] == "ok" and record["search"]["candidates"] == 6
    state = max(out.glob("ray/*/searcher-state-*.pkl"))  # the latest session's, as Ray Tune restores it
    search = pickle.loads(state.read_bytes())["searches"][record["run_id"]]
    milestone, first_rung = search["scheduler"]._brackets[0]._rungs[-1]  # Ray's ASHA: rungs in reverse order
    assert milestone == 1 and set(first_rung) == set(search["suggested"])  # all six candidates
