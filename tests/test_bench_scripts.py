"""Every script of ``bench/`` still starts (``--help``), with the shared preamble of ``bench/_common.py``.

The benchmarks themselves are not run here (they take minutes to hours); this catches a script that no
longer imports or builds its arguments. Each runs without PYTHONPATH, as the README's commands do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))


def test_there_are_bench_scripts():
    assert len(SCRIPTS) >= 7


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_prints_its_help(script):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {script}")
    first_line = (ROOT / "bench" / script).read_text().split('"""')[1].strip().split("\n")[0]
    assert first_line[:40] in " ".join(proc.stdout.split())  # the description is the docstring's first line


# ---- bench/majority_baseline.py -------------------------------------------------------------------
@pytest.fixture
def majority(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import majority_baseline

    return majority_baseline


def test_the_majority_baseline_scores_every_selection_metric(majority):
    """A constant prediction of the most frequent label, in each metric the benchmark selects by, by hand."""
    positive, negative = [1] * 7 + [0] * 3, [0] * 7 + [1] * 3  # p = 0.7
    assert majority.constant_score(positive, "accuracy") == majority.constant_score(negative, "accuracy") == 70.0
    assert majority.constant_score(positive, "f1") == pytest.approx(100 * 2 * 0.7 / 1.7)  # MRPC, QQP: positive 1
    assert majority.constant_score(negative, "f1") == 0.0  # the positive class is never predicted
    assert majority.constant_score(positive, "matthews_correlation") == 0.0  # CoLA
    cb = [0] * 5 + [1] * 3 + [2] * 2
    assert majority.constant_score(cb, "macro_f1", 3) == pytest.approx(100 * (2 * 0.5 / 1.5) / 3)
    assert majority.constant_score([0.0, 2.5, 2.5, 4.0], "pearson") == 0.0  # STS-B: a constant has no correlation
    with pytest.raises(ValueError, match="no constant baseline for metric 'em'; valid: accuracy, f1"):
        majority.constant_score(positive, "em")


def test_the_majority_baseline_script_on_a_run(tmp_path):
    """The script on the fixture run (MRPC by F1, STS-B by Pearson): each task's majority score from its
    test golds in its selection metric and in each other metric summary.csv has for it (MRPC's accuracy),
    beside the lowest row mean and the count of rows above it."""
    import gzip
    import json
    import shutil

    fixtures = ROOT / "tests" / "fixtures"
    shutil.copytree(fixtures / "records", tmp_path / "records")
    shutil.copytree(fixtures / "predictions", tmp_path / "predictions")
    (tmp_path / "summary.csv").write_text(
        "method,budget_params,task,test_score_mean,test_accuracy_mean\n"
        "lora,,glue/mrpc,90.0,60.0\nbipeft,22713,glue/mrpc,85.5,80.0\nlora,,glue/stsb,88.0,\n")
    proc = subprocess.run([sys.executable, "bench/majority_baseline.py", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {(cells[0], cells[1]): cells[2:] for line in proc.stdout.splitlines()[2:]
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}
    f1, accuracy = [], []
    for seed in (0, 1, 2):
        with gzip.open(fixtures / "predictions" / f"lora--manual--glue_mrpc--seed{seed}--bnone.jsonl.gz", "rt") as f:
            gold = [json.loads(line)["gold"] for line in f]
        p = max(gold.count(0), gold.count(1)) / len(gold)
        accuracy.append(100 * p)
        f1.append(100 * 2 * p / (1 + p) if gold.count(1) > gold.count(0) else 0.0)
    assert rows["glue/mrpc", "f1 (selection)"] == ["3", f"{sum(f1) / 3:.1f}", "2/2", "85.5 (bipeft ≤22,713)", "90.0"]
    above = sum(score > sum(accuracy) / 3 for score in (60.0, 80.0))
    assert rows["glue/mrpc", "accuracy"] == ["3", f"{sum(accuracy) / 3:.1f}", f"{above}/2", "60.0 (lora)", "80.0"]
    assert rows["glue/stsb", "pearson (selection)"][:3] == ["3", "0.0", "1/1"]
    assert ("glue/stsb", "accuracy") not in rows  # no accuracy score for STS-B in summary.csv


# ---- bench/rte_lora.py ------------------------------------------------------------------------------
def test_the_task_probe_runs_on_a_task_scored_by_mcc_only(shared_data, minilm_available):
    """CoLA records no accuracy: the probe counts the correct test predictions itself, so its majority-class
    comparison works for every classification task (a two-step smoke run under the benchmark's recipe)."""
    if not minilm_available:
        pytest.skip("the packaged MiniLM is not installed")
    proc = subprocess.run([sys.executable, "bench/rte_lora.py", "--task", "glue/cola", "--data-dir", str(shared_data),
                           "--max-train-samples", "16", "--max-eval-samples", "24", "--max-steps", "2",
                           "--suite-recipe", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("glue/cola:") and "matthews_correlation" in summary
    correct, total = summary.split(") vs majority")[0].rsplit("(", 1)[1].split("/")
    assert int(total) == 24 and 0 <= int(correct) <= 24


# ---- bench/precision_step.py ------------------------------------------------------------------------
def test_the_step_bench_times_the_uncached_bf16_step_on_plain_linears(tmp_path, monkeypatch):
    """``--uncached`` times the bf16 steps as the harness ran them before its frozen-cast cache: the models
    those steps train hold plain ``nn.Linear`` layers, where the harness's bf16 models hold cached ones;
    a one-round smoke run on tiny-bert prints both bf16 variants against fp32."""
    from core.training import FrozenCastLinear

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import precision_step

    args = precision_step.experiment_arguments("", 1).parse_args(["--backbone", "tiny-bert", "--threads", "1"])
    exp, _, _ = precision_step.experiment(args, "bf16")
    assert any(type(m) is FrozenCastLinear for m in exp.new_model().modules())
    plain = precision_step.without_cast_cache(exp).new_model()
    assert not any(type(m) is FrozenCastLinear for m in plain.modules())

    out = tmp_path / "steps.json"
    proc = subprocess.run([sys.executable, "bench/precision_step.py", "--backbone", "tiny-bert", "--rounds", "1",
                           "--steps", "1", "--threads", "1", "--uncached", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(json.loads(out.read_text())["median_ms"]) == {
        f"{kind}/{precision}" for kind in ("retrain", "bipeft") for precision in ("fp32", "bf16", "bf16 uncached")}
    assert proc.stdout.count("fp32 / bf16 uncached =") == 2 and proc.stdout.count("fp32 / bf16 =") == 2
