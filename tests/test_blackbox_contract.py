"""The contract of every registered black-box method (``methods.METHODS``), with a synthetic objective.

A method joins these tests by being registered. Its Ray Tune ``Searcher`` proposes configs that
decode to architectures of the space; NaN, infinite and failed trials do not stop it; ``save`` /
``restore`` and a cloudpickle round trip (what Ray does to a searcher) continue the same search;
the same seed proposes the same candidates; ``select`` returns the best finished candidate within
the budget and refuses when none fits. Method-specific behaviour (the BO loop, optuna's states, APET's
draws) is tested in each method's own file.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import cloudpickle
import numpy as np
import pytest
from conftest import suggest_and_complete
from ray.tune.schedulers import TrialScheduler

from methods import METHODS, get_method
from methods.base import PARAMS, RATIO, ROUND, SCORE, BlackBoxMethod, SearchProblem
from methods.blackbox import BlackBoxConfig, ParetoSelect, ProxyFidelity
from spaces import build_space
from suite.backbones import backbone_sites

BLACK_BOX = [name for name in METHODS.names() if METHODS.get(name).kind == "black-box"]
# Options that keep a method's searcher quick on a tiny space (a method without an entry runs its defaults).
FAST = {
    "autopeft": {"n_init": 3, "candidates": 8, "q": 2, "random_pool": 32, "max_evals": 60, "n_restarts": 4,
                 "mc_samples": 16},
    "optuna": {"population_size": 4, "n_startup_trials": 4, "candidates": 8},
    "apet": {"candidates": 8},
}
STEPS = 6
CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


@pytest.fixture(scope="module")
def space():
    return build_space("s1", backbone_sites("tiny-t5"), backbone_name="tiny-t5")


def method(name: str):
    return get_method(name, FAST.get(name, {}))


def searcher(name: str, space, seed: int = 0, budget: int | None = None):
    budget = space.full_size() // 3 if budget is None else budget
    return method(name).make_searcher(SearchProblem(space, budget, seed), metric=SCORE, mode="max")


def observe(space, config, score: float | None = None) -> dict:
    """A synthetic proxy result: the score grows with the architecture's size."""
    params = space.param_count(space.from_tune(config))
    value = 50.0 + 40.0 * params / space.full_size() if score is None else score
    return {SCORE: value, RATIO: params / space.sites.backbone_params, PARAMS: params}


def drive(s, space, n: int, start: int = 0) -> list[dict]:
    return suggest_and_complete(s, space, n, observe, start)


def key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def test_there_are_black_box_methods():
    assert {"autopeft", "apet", "optuna"} <= set(BLACK_BOX)


@pytest.mark.parametrize("name", BLACK_BOX)
def test_suggestions_decode_to_architectures_of_the_space(name, space):
    m = method(name)
    for config in drive(searcher(name, space), space, STEPS):
        assert not any("/" in k for k in config)  # a valid Ray Tune key
        space.validate(m.candidate(space, config))


# Results a searcher must take as a failed trial: a non-finite or missing score, or an error (even
# after a score was reported).
BAD_RESULTS = {
    "nan": lambda space, config: ({**observe(space, config), SCORE: math.nan}, False),
    "inf": lambda space, config: ({**observe(space, config), SCORE: math.inf}, False),
    "-inf": lambda space, config: ({**observe(space, config), SCORE: -math.inf}, False),
    "no score": lambda space, config: ({"something_else": 1.0}, False),
    "errored after reporting": lambda space, config: (observe(space, config), True),
}


@pytest.mark.parametrize("name", BLACK_BOX)
def test_nan_inf_and_failed_trials_do_not_stop_the_search(name, space):
    """Bad results steer the search exactly as trials that failed without a result: never as a
    score (an inf taken as the best, a NaN fitted by a model) and never as the end of the search."""

    def after(outcomes) -> list[str]:
        s = searcher(name, space, seed=2)
        drive(s, space, STEPS)  # past any initial design: results now steer the search
        for i, outcome in enumerate(outcomes):
            config = s.suggest(f"bad{i}")
            result, error = outcome(space, config)
            s.on_trial_complete(f"bad{i}", result, error=error)
        configs = drive(s, space, 3, start=STEPS)
        for config in configs:
            space.validate(method(name).candidate(space, config))
        return [key(c) for c in configs]

    failed = after([lambda space, config: (None, True)] * len(BAD_RESULTS))
    assert after(list(BAD_RESULTS.values())) == failed


@pytest.mark.parametrize("name", BLACK_BOX)
def test_save_and_restore_continue_the_same_search(name, space, tmp_path):
    a = searcher(name, space, seed=3)
    drive(a, space, STEPS - 1)
    path = tmp_path / "searcher.pkl"
    a.save(str(path))
    b = searcher(name, space, seed=3)
    b.restore(str(path))
    assert key(b.suggest("n")) == key(a.suggest("n"))


@pytest.mark.parametrize("name", BLACK_BOX)
def test_a_pickled_searcher_goes_on_the_same_way(name, space):
    a = searcher(name, space, seed=1)
    drive(a, space, STEPS - 1)
    b = cloudpickle.loads(cloudpickle.dumps(a))
    assert key(b.suggest("x")) == key(a.suggest("x"))


@pytest.mark.parametrize("name", BLACK_BOX)
def test_the_same_seed_proposes_the_same_candidates(name, space):
    first = [key(c) for c in drive(searcher(name, space, seed=5), space, STEPS)]
    again = [key(c) for c in drive(searcher(name, space, seed=5), space, STEPS)]
    assert first == again


@pytest.mark.parametrize("name", BLACK_BOX)
def test_select_returns_the_best_finished_candidate_within_the_budget(name, space):
    m, budget = method(name), space.full_size() // 3
    problem = SearchProblem(space, budget, 0)
    rng = np.random.default_rng(0)
    inside = [space.to_tune_config(space.sample(rng, budget)) for _ in range(3)]
    over = space.to_tune_config(space.full())
    results = [
        {"config": over, **observe(space, over, 99.0)},                        # best score, over the budget
        {"config": inside[0], **observe(space, inside[0], 80.0)},
        {"config": inside[1], **observe(space, inside[1], 70.0)},
        {"config": inside[2], **observe(space, inside[2], math.nan)},           # failed
    ]
    selected = m.select(problem, results)
    assert selected.architecture == space.from_tune(inside[0])
    assert space.param_count(selected.architecture) <= budget
    json.dumps(selected.info)  # the record keeps it
    with pytest.raises(RuntimeError, match="within the budget"):
        m.select(problem, results[:1])


@pytest.mark.parametrize("name", BLACK_BOX)
def test_config_json_round_trip_and_unknown_keys(name):
    m = get_method(name)
    again = METHODS.get(name)(json.loads(json.dumps(m.config_dict())))
    assert again.config == m.config
    with pytest.raises(ValueError, match=r"unknown \w+ key 'no_such_option'.*valid keys"):
        METHODS.get(name)({"no_such_option": 1})


@pytest.mark.parametrize("name", BLACK_BOX)
def test_the_stage_reads_candidates_concurrency_and_fidelity_from_a_black_box_config(name):
    m = get_method(name, {**FAST.get(name, {}), "max_steps": 7})
    assert isinstance(m.config, BlackBoxConfig)
    assert m.num_candidates() == m.config.candidates
    assert m.max_concurrent() == m.config.concurrency() >= 1
    assert m.fidelity() == m.config.overrides() and m.fidelity()["max_steps"] == 7


@pytest.mark.parametrize("name", BLACK_BOX)
def test_scheduler_asha_labels_the_rows_and_stops_weak_candidates_at_rungs_of_rounds(name):
    full = get_method(name, {**FAST.get(name, {}), "candidates": 8})
    assert full.make_scheduler() is None and "ASHA" not in " ".join(full.settings())
    m = get_method(name, {**FAST.get(name, {}), "candidates": 8, "scheduler": "asha"})
    assert m.settings()[-1] == "ASHA"
    scheduler = m.make_scheduler()
    assert scheduler is not m.make_scheduler()  # each job its own rungs
    a, b, c = (SimpleNamespace(trial_id=t) for t in "abc")
    for trial in (a, b, c):
        scheduler.on_trial_add(None, trial)

    def report(trial, score: float, round: int) -> str:
        return scheduler.on_trial_result(None, trial, {SCORE: score, ROUND: round})

    # rungs at rounds 1, 3, 9, ...: the first to reach a rung goes on, then only the top third there
    assert [report(a, 80.0, 1), report(b, 70.0, 1), report(c, 90.0, 1)] == [CONTINUE, STOP, CONTINUE]
    assert report(c, 10.0, 2) == CONTINUE  # between rungs, no verdict
    assert [report(a, 80.0, 3), report(c, 75.0, 3)] == [CONTINUE, STOP]
    assert report(a, 80.0, 10**5) == CONTINUE  # no cap by default: the proxy's own end ends it

    tuned = get_method(name, {**FAST.get(name, {}), "candidates": 8, "scheduler": "asha", "asha_grace_period": 2,
                              "asha_reduction_factor": 2, "asha_max_t": 4})
    assert tuned.settings()[-1] == "ASHA grace_period=2 reduction_factor=2 max_t=4"
    scheduler = tuned.make_scheduler()
    for trial in (a, b):
        scheduler.on_trial_add(None, trial)
    assert [report(a, 80.0, 1), report(b, 10.0, 1)] == [CONTINUE, CONTINUE]  # before the grace period
    assert [report(a, 80.0, 2), report(b, 10.0, 2)] == [CONTINUE, STOP]
    assert report(a, 80.0, 4) == STOP  # max_t: every candidate stops there


@pytest.mark.parametrize("name", BLACK_BOX)
def test_scheduler_options_are_checked(name):
    base = {**FAST.get(name, {}), "candidates": 8}
    with pytest.raises(ValueError, match="unknown scheduler 'hyperband'; valid: fifo, asha"):
        get_method(name, {**base, "scheduler": "hyperband"})
    with pytest.raises(ValueError, match=r"grace_period=2: only read with scheduler='asha', and scheduler is 'fifo'"):
        get_method(name, {**base, "asha_grace_period": 2})
    with pytest.raises(ValueError, match=r"asha_max_t \(2\) cannot be below asha_grace_period \(3\)"):
        get_method(name, {**base, "scheduler": "asha", "asha_grace_period": 3, "asha_max_t": 2})
    with pytest.raises(ValueError, match="asha_reduction_factor must be an int >= 2, got 1"):
        get_method(name, {**base, "scheduler": "asha", "asha_reduction_factor": 1})


def test_a_black_box_method_whose_config_is_not_a_black_box_config_is_refused():
    class Unconfigured(BlackBoxMethod):
        name = "unconfigured"
        Config = ProxyFidelity  # proxy fields, but no candidates: the stage could not run it

        def make_searcher(self, problem, metric=SCORE, mode="max"):
            raise AssertionError("never reached")

    with pytest.raises(TypeError, match="must derive from methods.blackbox.BlackBoxConfig"):
        Unconfigured()


def test_the_default_and_the_pareto_selection_filter_and_refuse_alike(space):
    budget = space.full_size() // 3
    problem = SearchProblem(space, budget, 0)
    config = space.to_tune_config(space.sample(np.random.default_rng(0), budget))
    over = space.to_tune_config(space.full())
    results = [{"config": config, **observe(space, config, math.nan)},                   # failed
               {"config": config, **observe(space, config, 60.0), PARAMS: math.nan},    # no parameter count
               {"config": over, **observe(space, over, 90.0)}]                          # over the budget
    refusals = []
    for select in (BlackBoxMethod.select, ParetoSelect.select):
        with pytest.raises(RuntimeError, match="within the budget") as refused:
            select(get_method("apet"), problem, results)
        refusals.append(str(refused.value))
    assert refusals[0] == refusals[1] == (f"no candidate of 3 finished within the budget of {budget} parameters "
                                          "(1 finished, 1 of them over the budget)")
