"""The optuna baseline: Ray's OptunaSearch, two objectives, the budget as a constraint."""

from __future__ import annotations

import math

import pytest

from methods import get_method
from methods.base import PARAMS, RATIO, SCORE, SearchProblem
from spaces import build_space
from suite.backbones import backbone_sites


@pytest.fixture(scope="module")
def space():
    return build_space("s1", backbone_sites("tiny-t5"), backbone_name="tiny-t5")


def report(space, config, score):
    params = space.param_count(space.from_tune(config))
    return {SCORE: score, RATIO: params / space.sites.backbone_params, PARAMS: params}


def asked(searcher):
    """The study's trials Ray has asked for (enqueued initial points not yet asked are WAITING)."""
    from optuna.trial import TrialState

    return [t for t in searcher._ot_study.trials if t.state != TrialState.WAITING]


def study_constraints(searcher):
    from optuna.samplers._base import _CONSTRAINTS_KEY

    return [t.system_attrs.get(_CONSTRAINTS_KEY) for t in asked(searcher)]


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_two_objectives_and_the_budget_constraint(space, sampler):
    budget = space.full_size() // 4
    method = get_method("optuna", {"sampler": sampler, "population_size": 4, "n_startup_trials": 4})
    searcher = method.make_searcher(SearchProblem(space, budget, 0))
    assert searcher.metric == [SCORE, RATIO] and searcher.mode == ["max", "min"]
    assert searcher.set_search_properties(SCORE, "max", space.to_tune()) is True  # Tuner's view ignored
    assert searcher.metric == [SCORE, RATIO]
    configs = []
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        assert set(config) == {d.key for d in space.dims()}
        searcher.on_trial_complete(f"t{i}", report(space, config, 50.0 + i))
        configs.append(config)
    params = [space.param_count(space.from_tune(c)) for c in configs]
    assert all(p <= budget for p in params[:4])  # the random first trials are drawn within the budget
    assert study_constraints(searcher) == [(float(p - budget),) for p in params]
    assert [t.values for t in asked(searcher)][:2] == [[50.0, params[0] / space.sites.backbone_params],
                                                                 [51.0, params[1] / space.sites.backbone_params]]


def test_nan_and_errors_are_failures(space):
    from optuna.trial import TrialState

    searcher = get_method("optuna").make_searcher(SearchProblem(space, space.full_size() // 4, 0))
    c = [searcher.suggest(f"t{i}") for i in range(3)]
    searcher.on_trial_complete("t0", report(space, c[0], math.nan))
    searcher.on_trial_complete("t1", report(space, c[1], 70.0), error=True)  # errored after reporting
    searcher.on_trial_complete("t2", None, error=True)
    assert [t.state for t in asked(searcher)] == [TrialState.FAIL] * 3
    assert searcher.suggest("t3") is not None  # the search goes on


def test_select_and_contract(space):
    budget = space.full_size() // 4
    method = get_method("optuna", {"candidates": 8, "max_concurrent": 2, "max_train_samples": 100})
    assert (method.kind, method.num_candidates(), method.max_concurrent()) == ("black-box", 8, 2)
    assert method.fidelity() == {"max_train_samples": 100}
    searcher = method.make_searcher(SearchProblem(space, budget, 0))
    results = []
    for i in range(8):
        config = searcher.suggest(f"t{i}")
        results.append({"config": config, **report(space, config, 50.0 + i)})
    fits = [r for r in results if r[PARAMS] <= budget]
    info = method.select(SearchProblem(space, budget, 0), results).info  # the best within budget: the catalogue
    assert info["within_budget"] == len(fits) and info["pareto"]
    with pytest.raises(ValueError, match="valid: nsga2, tpe"):
        get_method("optuna", {"sampler": "cmaes"})
