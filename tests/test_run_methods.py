"""Every kind of searched method through the real stages: ``python -m suite run`` on Ray, tiny model."""

from __future__ import annotations

import json

import pytest

from spaces import build_space
from suite.backbones import backbone_sites
from suite.cli import main
from suite.records import load_records, validate_dir

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "48",
        "--max-eval-samples", "24", "--epochs", "1", "--seeds", "0"]


def budget_params(space: str, fraction_of_space: float) -> int:
    return int(build_space(space, backbone_sites("tiny-bert")).full_size() * fraction_of_space)


def test_one_shot_methods_search_then_retrain(tmp_path, ray_session):
    out = tmp_path / "run"
    budget = budget_params("s2", 0.05)
    assert main(["run", "--methods", "bipeft,s3delta,prunepeft", "--space", "s2", *TINY,
                 "--budget-params", str(budget), "--out", str(out)]) == 0
    records = {r["method"]: r for r in load_records(out)}
    assert set(records) == {"bipeft", "s3delta", "prunepeft"}
    for name, r in records.items():
        assert r["status"] == "ok", (name, r["error"])
        assert r["time"]["search_s"] > 0 and r["method_kind"] == "one-shot"
        assert 0 < r["params"]["peft"] <= budget and r["budget"]["params"] == budget
        assert r["architecture"]["space"] == "s2"
    assert records["bipeft"]["search"]["stop_reason"] in ("triggers", "step_cap")
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
    trials = list((out / "ray").glob(f"blackbox-{record['run_id']}/*/result.json"))
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
    assert not (out / "ray" / f"blackbox-{record['run_id']}").exists()
    assert 0.8 * budget <= record["params"]["peft"] <= budget
