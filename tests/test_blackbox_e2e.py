"""Black-box methods end to end on Ray Tune: a stand-in for the suite's search stage.

The stage (suite/stages.py) is not written yet; :func:`search_stage` follows its contract
(methods/base.py, BlackBoxMethod): ``num_candidates()`` trials proposed by ``make_searcher`` inside
a ``ConcurrencyLimiter(max_concurrent())``, each decoded with ``candidate``, proxy-trained by the
harness at ``fidelity()`` and reporting ``{SCORE, RATIO, PARAMS}``; then ``select``. Swap it for
the real stage once that exists.
"""

from __future__ import annotations

import sys

import helpers
import pytest
from ray import cloudpickle  # Ray pickles trainables with its own copy

from methods import get_method
from methods.base import PARAMS, RATIO, SCORE
from spaces import build_space
from suite.backbones import backbone_sites

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BACKBONE = "tiny-bert"


@pytest.fixture(scope="module", autouse=True)
def ship_test_code():
    """Ray workers import by module name and tests/ is not on their path: send this code by value."""
    modules = [sys.modules[__name__], helpers]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    yield
    for module in modules:
        cloudpickle.unregister_pickle_by_value(module)


def proxy_trial(config, method, space):
    """The stage's trainable: decode, proxy-train (no test split), report the trial contract."""
    from ray import tune

    arch = method.candidate(space, config)
    exp = helpers.toy_experiment(backbone=BACKBONE, **{"max_steps": 2, **method.fidelity()})
    res = exp.retrain(arch, test=False)
    tune.report({SCORE: res.validation[exp.task.selection_metric], RATIO: res.ratio, PARAMS: res.peft_params})


def search_stage(method, space, budget, seed, storage):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    searcher = ConcurrencyLimiter(method.make_searcher(space, budget, seed, metric=SCORE, mode="max"),
                                  max_concurrent=method.max_concurrent())
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(proxy_trial, method=method, space=space), {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=method.num_candidates(),
                                    metric=SCORE, mode="max"),
        run_config=tune.RunConfig(name=f"search-{method.name}", storage_path=str(storage), verbose=0),
    )
    grid = tuner.fit()
    results = [{"config": r.config, SCORE: r.metrics.get(SCORE), RATIO: r.metrics.get(RATIO),
                PARAMS: r.metrics.get(PARAMS)} for r in grid]
    return grid, results


@pytest.mark.parametrize("name, options", [
    ("autopeft", {"candidates": 5, "n_init": 3, "q": 2, "random_pool": 16, "max_evals": 40, "n_restarts": 2,
                  "mc_samples": 16}),
    ("apet", {"candidates": 4, "max_concurrent": 2}),
    ("optuna", {"candidates": 5, "max_concurrent": 2, "population_size": 3}),
])
def test_search_stage_on_ray(ray_session, tmp_path, name, options):
    method = get_method(name, options)
    space = build_space("s1", backbone_sites(BACKBONE), backbone_name=BACKBONE)
    budget = space.full_size() // 3
    grid, results = search_stage(method, space, budget, seed=0, storage=tmp_path)
    assert len(results) == method.num_candidates() and not grid.errors
    for r in results:
        assert r[PARAMS] == space.param_count(method.candidate(space, r["config"]))
        assert 0 <= r[SCORE] <= 100 and r[RATIO] == r[PARAMS] / space.sites.backbone_params
    arch, info = method.select(space, budget, results)
    assert 0 < space.param_count(arch) <= budget
    best = max((r for r in results if r[PARAMS] <= budget), key=lambda r: r[SCORE])[SCORE]
    assert any(r[SCORE] == best and method.candidate(space, r["config"]) == arch for r in results)
    if name == "autopeft":
        assert info["pareto"] and all(r[PARAMS] <= budget for r in results)  # constrained by default
