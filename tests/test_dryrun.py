"""``run --dry-run``: the simulation of the run's schedule on hand-made costs, the projection's
arithmetic on given costs, and the command: it prints the plan and a projection, writes nothing and
starts no Ray; bad input is one line."""

from __future__ import annotations

import json

import pytest
from helpers import refused_before_ray

from suite.cli import main
from suite.projection import Pipeline, simulate

TINY = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "48",
        "--max-eval-samples", "16", "--epochs", "1"]


def test_the_simulation_follows_the_plan_searchers_order_on_hand_made_costs():
    """4 slots; two black-box jobs of 4 candidates of 10 s, 2 at once each, a one-shot search of 30 s and
    a manual retrain of 20 s. At 0 the four candidates start, and Tune, which keeps up to 4 suggestions
    waiting, gets the search and the manual retrain next (no candidate is ready); at 10 those two start
    first, then the next candidates. A then B end at 30, their retrains at 35; the search ends at 40, its
    retrain at 45."""
    bb = {"kind": "black-box", "candidates": (10.0,) * 4, "max_concurrent": 2, "retrains": (5.0,)}
    lanes = [Pipeline("A", **bb), Pipeline("B", **bb), Pipeline("C", "one-shot", search=30.0, retrains=(5.0,)),
             Pipeline("D", "manual", retrains=(20.0,))]
    schedule = simulate(lanes, slots=4)
    assert schedule.makespan == 45.0
    assert schedule.compute == 8 * 10 + 30 + 20 + 3 * 5
    assert schedule.job_end == {"D": 30.0, "A": 35.0, "B": 35.0, "C": 45.0}
    starts = {(t.job, t.kind, t.index): t.start for t in schedule.trials}
    assert starts[("C", "search", 0)] == starts[("D", "retrain", 0)] == 10.0
    assert [starts[("A", "candidate", i)] for i in range(4)] == [0.0, 0.0, 10.0, 10.0]
    # a pipeline: a retrain starts when its job's last candidate or its search has ended, not before
    assert starts[("A", "retrain", 0)] == starts[("B", "retrain", 0)] == 30.0
    assert starts[("C", "retrain", 0)] == 40.0
    for t in schedule.trials:
        before = [u.end for u in schedule.trials if u.job == t.job and u.kind != "retrain"]
        assert t.kind != "retrain" or t.start >= max(before, default=0.0)
    for job in "AB":  # never more than 2 candidates of one job at once
        spans = [(t.start, t.end) for t in schedule.trials if t.job == job and t.kind == "candidate"]
        assert all(sum(s <= when < e for s, e in spans) <= 2 for when, _ in spans)
    # one slot runs everything one after the other; enough slots leave the longest pipeline
    assert simulate(lanes, slots=1).makespan == schedule.compute
    assert simulate(lanes, slots=16).makespan == 35.0  # C's search could start at once: 30 + 5


def test_the_simulation_uses_the_run_searchers_order():
    from suite import projection as sim
    from suite import schedule, trials

    assert sim.ORDER == schedule.ORDER
    assert (sim.CANDIDATE, sim.SEARCH, sim.RETRAIN) == (trials.CANDIDATE, trials.SEARCH, trials.RETRAIN)


def test_a_dry_run_prints_the_plan_and_a_projection_writes_nothing_and_starts_no_ray(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--dry-run", "--methods", "s3delta,lora,apet", "--method-option", "apet.candidates=3",
            *TINY, "--slots", "1,2", "--out", str(out)]
    with refused_before_ray(tmp_path):
        assert main(argv) == 0
    text = capsys.readouterr().out
    assert "plan: 3 jobs, 7 trials" in text  # a search, 3 candidates, 3 retrains
    assert "3 per job" in text and "search_step:s3delta" in text and "measured here (cpu" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("1 ", "2 "))]
    assert [row[0] for row in rows] == ["1", "2"]
    assert "nothing written" in text and not out.exists()


def lora_on_qqp(tmp_path) -> list[str]:
    """A dry run of one LoRA job on a task whose data are not here (QQP), on given costs and split sizes:
    3,200 training examples at batch 32 for one epoch = 100 steps of 1 s; QQP validates every 500 steps,
    so once, at the last step: 100 validation and 100 test examples of 10 ms; set-ups 2 + 3 s."""
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"batch": [32, 128], "costs": {
        "retrain_step": {"seconds": 0.5, "source": "a test"},
        "retrain_step:lora": {"times": "retrain_step", "factor": 2},
        "eval_example": {"seconds": 0.01}, "data_setup": {"seconds": 2}, "retrain_setup": {"seconds": 3}}}))
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"glue/qqp": {"train": 3200, "validation": 100, "test": 100}}))
    return ["run", "--dry-run", "--methods", "lora", "--backbone", "tiny-bert", "--tasks", "glue/qqp", "--epochs", "1",
            "--step-costs", str(costs), "--split-sizes", str(sizes)]


LORA_ON_QQP_TRIAL = 2 + 3 + 100 * 1.0 + 200 * 0.01  # seconds of its retrain trial (Tune's gap aside)


def test_the_projection_on_given_costs_is_the_trials_arithmetic(tmp_path, capsys):
    """:func:`lora_on_qqp`'s one retrain; Tune's gap; the run's start and end."""
    from suite.dryrun import duration
    from suite.projection import RUN_END_S, RUN_START_S, TRIAL_GAP_S

    argv = [*lora_on_qqp(tmp_path), "--slots", "3"]
    with refused_before_ray(tmp_path):
        assert main(argv) == 0
    text = capsys.readouterr().out
    trial = LORA_ON_QQP_TRIAL + TRIAL_GAP_S
    assert f"     3 {duration(trial + RUN_START_S + RUN_END_S):>14s}" in text, text
    assert "extrapolated: 2 x retrain_step" in text and "given by --split-sizes" in text


def test_a_learning_rate_grid_is_one_retrain_trial_per_rate(tmp_path, capsys):
    """As the run (``Plan.retrain_lrs``), the projection retrains :func:`lora_on_qqp`'s job once per rate of
    ``--lr-grid``: three trials, one after the other on one slot, side by side on three."""
    from suite.dryrun import duration
    from suite.projection import RUN_END_S, RUN_START_S, TRIAL_GAP_S

    argv = [*lora_on_qqp(tmp_path), "--lr-grid", "1e-4,3e-4,1e-3", "--slots", "1,3"]
    with refused_before_ray(tmp_path):
        assert main(argv) == 0
    text = capsys.readouterr().out
    assert "plan: 1 jobs, 3 trials" in text, text
    trial = LORA_ON_QQP_TRIAL + TRIAL_GAP_S
    assert f"     1 {duration(3 * trial + RUN_START_S + RUN_END_S):>14s}" in text, text
    assert f"     3 {duration(trial + RUN_START_S + RUN_END_S):>14s}" in text, text


def test_a_gpu_check_json_gives_its_steps_and_the_rest_is_timed_here_and_carried_over(tmp_path, capsys):
    check = tmp_path / "gpu_check.json"
    check.write_text(json.dumps({"gpu": "a GPU", "batch": [16, 64, 4], "rows": [
        {"key": "suite_lora", "ms_per_step": 1.0}, {"key": "bipeft_search", "ms_per_step": 5.0}]}))
    argv = ["run", "--dry-run", "--methods", "lora,bitfit", *TINY, "--batch-size", "16", "--max-source-length", "64",
            "--step-costs", str(check), "--slots", "2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    cost = {line.split()[0]: line for line in lines if line.startswith("  ") and " ms " in line}
    assert "1.0 ms  measured by gpu_check (a GPU" in cost["retrain_step:lora"]
    assert "extrapolated" in cost["retrain_step:bitfit"] and "measured here" in cost["data_setup"]


@pytest.mark.parametrize("argv, message", [
    (["--dry-run", "--slots", "0"], "--slots takes positive integers, comma-separated (e.g. 8 or 8,64), got '0'"),
    (["--dry-run", "--slots", "8,x"], "--slots takes positive integers, comma-separated (e.g. 8 or 8,64), got 'x'"),
    (["--slots", "8"], "--slots only go with --dry-run"),
    (["--dry-run", "--resume"], "--dry-run projects a new run; drop --resume"),
    (["--dry-run", "--step-costs", "missing.json"], "--step-costs missing.json: no such file"),
])
def test_bad_dry_run_input_is_one_line(tmp_path, capsys, argv, message):
    with refused_before_ray(tmp_path):
        assert main(["run", "--methods", "lora", *TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("costs, message", [
    ({"rows": []}, "needs its batch and its suite_lora row's ms_per_step"),
    ({"batch": [32, 128], "costs": {"a": {"times": "b", "factor": 1}, "b": {"times": "a", "factor": 1}}},
     "is a multiple of 'a', which is circular"),
    ({"batch": [32, 128], "costs": {"eval_example": {"seconds": -1}}}, "eval_example needs a number of seconds >= 0"),
    ({"costs": {}}, "is neither a `bench/gpu_check.py --out` JSON"),
])
def test_a_bad_costs_file_is_one_line(tmp_path, costs, message):
    from suite.plan import UsageError
    from suite.stepcosts import load_step_costs

    path = tmp_path / "costs.json"
    path.write_text(json.dumps(costs))
    with pytest.raises(UsageError, match="^--step-costs .*" + message.replace("(", r"\(").replace(")", r"\)")):
        load_step_costs(str(path))
