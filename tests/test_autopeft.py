"""AutoPEFT: the encodings, the Ray Searcher contract driven by a synthetic objective, and select."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from conftest import suggest_and_complete

from methods import get_method
from methods.autopeft import bo
from methods.autopeft.encoding import PerLayerEncoding, SharedSizeEncoding
from methods.base import PARAMS, RATIO, SCORE, SearchProblem
from spaces import build_space
from suite.backbones import backbone_sites

FAST = {"random_pool": 32, "max_evals": 60, "n_restarts": 4, "mc_samples": 16}


@pytest.fixture(scope="module")
def space():
    """S1 on tiny-t5: 12 modules (adapters at 4 FFN sub-layers, prefixes at 4 attention layers)."""
    return build_space("s1", backbone_sites("tiny-t5"), backbone_name="tiny-t5")


@pytest.fixture(scope="module")
def budget(space):
    return space.full_size() // 3


def objective(space, config):
    """A synthetic validation score: grows with the size of every module, some modules more."""
    x = space.encode(space.from_tune(config)).numpy()
    w = np.linspace(1.0, 3.0, len(x))
    return 50.0 + 30.0 * float(w @ np.sqrt(x)) / float(w.sum())


def result(space, config, score=None):
    params = space.param_count(space.from_tune(config))
    return {SCORE: objective(space, config) if score is None else score,
            RATIO: params / space.sites.backbone_params, PARAMS: params}


def searcher_for(space, budget, seed=0, **options):
    return get_method("autopeft", {"n_init": 4, "candidates": 12, "q": 2, **FAST, **options}).make_searcher(
        SearchProblem(space, budget, seed))


def run(searcher, space, n, start=0):
    return suggest_and_complete(searcher, space, n, result, start)


# ---- encodings ----------------------------------------------------------------------------------------
def test_per_layer_encoding_is_the_space_encoding(space):
    enc = PerLayerEncoding(space)
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = enc.sample(rng)
        arch = enc.to_arch(v)
        assert enc.from_arch(arch) == v
        assert enc.params(v) == space.param_count(arch)
        assert enc.encode([v])[0].tolist() == space.encode(arch).tolist()
        assert space.from_tune(enc.config(v)) == arch


def test_shared_sizes_round_trip_and_counts(space):
    enc = SharedSizeEncoding(space)
    assert enc.ops == ["prefix", "adapter_serial", "adapter_parallel"]
    assert enc.units == [("enc", 0), ("enc", 1), ("dec", 0), ("dec", 1)]
    assert len(enc) == 3 + 4
    rng = np.random.default_rng(0)
    for budget in (None, space.full_size() // 5):
        for _ in range(30):
            v = enc.sample(rng, budget)
            arch = enc.to_arch(v)
            assert enc.params(v) == space.param_count(arch) > 0
            assert budget is None or enc.params(v) <= budget
            sizes = {}
            for p in arch.placements:  # one size per op, shared by every layer
                assert sizes.setdefault(p.op, p.size) == p.size
            on = {(p.site.stack, p.site.layer) for p in arch.placements}
            assert on == {u for u, bit in zip(enc.units, v[3:]) if bit}
            assert enc.from_arch(arch) == v
            assert space.from_tune(enc.config(v)) == arch


def test_shared_sizes_rejects_what_it_cannot_express(space):
    enc = SharedSizeEncoding(space)
    serial = [i for i, d in enumerate(space.dims()) if d.op == "adapter_serial"]
    choices = [0] * len(space)
    choices[serial[0]], choices[serial[1]] = 1, 4
    with pytest.raises(ValueError, match="two sizes"):
        enc.from_arch(space.from_choices(choices))
    choices[serial[1]] = 1  # one size, but a kept layer without its prefix and parallel adapter: fine
    v = enc.from_arch(space.from_choices(choices))
    assert enc.to_arch(v) == space.from_choices(choices)


def test_neighbours_change_one_module_and_repair_to_the_budget(space, budget):
    enc = PerLayerEncoding(space)
    rng = np.random.default_rng(0)
    v = enc.sample(rng, budget)
    for _ in range(50):
        n = enc.neighbour(v, rng, budget)
        if n is None:
            continue
        assert n != v and 0 < enc.params(n) <= budget
    unconstrained = [enc.neighbour(v, rng) for _ in range(50)]
    assert all(sum(a != b for a, b in zip(n, v)) == 1 for n in unconstrained if n is not None)


# ---- the searcher ---------------------------------------------------------------------------------------
def test_suggestions_are_configs_of_the_space_within_the_budget(space, budget):
    searcher = searcher_for(space, budget)
    configs = run(searcher, space, 8)
    for config in configs:
        assert set(config) == {d.key for d in space.dims()} and not any("/" in k for k in config)
        assert 0 < space.param_count(space.from_tune(config)) <= budget
    assert len({tuple(sorted(c.items())) for c in configs}) == 8  # never the same candidate twice
    assert [o.source for o in searcher.observations] == ["init"] * 4 + ["bo"] * 4
    assert all(o.ok for o in searcher.observations)


def test_after_n_init_it_fits_once_per_new_observation(space, budget, monkeypatch):
    fits = []
    real_fit = bo.fit_surrogate
    monkeypatch.setattr(bo, "fit_surrogate", lambda X, Y, cfg: fits.append(len(X)) or real_fit(X, Y, cfg))
    searcher = searcher_for(space, budget)
    run(searcher, space, 4)
    assert fits == []  # the initial design needs no model
    searcher.suggest("a")
    searcher.suggest("b")  # the second of a round reuses the fitted model
    assert fits == [4]
    searcher.on_trial_complete("a", None, error=True)
    searcher.suggest("c")  # a failure adds no usable observation: still no refit
    assert fits == [4]
    searcher.on_trial_complete("b", {SCORE: 71.0})
    searcher.suggest("d")
    assert fits == [4, 5]


def test_q_pending_suggestions_differ_and_enter_as_x_pending(space, budget, monkeypatch):
    seen_pending = []
    real_acq = bo.acquisition

    def spy(model, ref, X_baseline, X_pending, cfg, seed):
        seen_pending.append(None if X_pending is None else X_pending.shape[0])
        return real_acq(model, ref, X_baseline, X_pending, cfg, seed)

    monkeypatch.setattr(bo, "acquisition", spy)
    searcher = searcher_for(space, budget, q=3)
    run(searcher, space, 4)
    batch = [searcher.suggest(f"q{i}") for i in range(3)]
    assert seen_pending == [None, 1, 2]
    assert len({tuple(sorted(c.items())) for c in batch}) == 3
    assert len(searcher.pending) == 3


def test_failed_and_nan_trials_are_recorded_and_skipped_by_the_model(space, budget, monkeypatch):
    rows = []
    real_fit = bo.fit_surrogate
    monkeypatch.setattr(bo, "fit_surrogate", lambda X, Y, cfg: rows.append(len(X)) or real_fit(X, Y, cfg))
    searcher = searcher_for(space, budget, n_init=5)
    outcomes = [
        lambda c: ({SCORE: math.nan, PARAMS: 1}, False),
        lambda c: (None, True),
        lambda c: ({"other": 1.0}, False),
        lambda c: (result(space, c), True),  # errored after reporting: still a failure
        lambda c: (result(space, c), False),
    ]
    for i, outcome in enumerate(outcomes):
        config = searcher.suggest(f"t{i}")
        res, error = outcome(config)
        searcher.on_trial_complete(f"t{i}", res, error=error)
    assert [o.status for o in searcher.observations] == ["nan", "error", "nan", "error", "ok"]
    config = searcher.suggest("t5")  # one usable observation: a random fallback, no model
    assert rows == [] and searcher.fallbacks == 1
    searcher.on_trial_complete("t5", result(space, config))
    searcher.suggest("t6")
    assert rows == [2]  # only the two usable observations reach the GP
    failed = {o.design for o in searcher.observations if not o.ok}
    assert searcher.pending["t6"] not in failed


def test_save_restore_resumes_without_losing_observations(space, budget, tmp_path):
    a = searcher_for(space, budget, seed=3)
    run(a, space, 5)
    a.suggest("p1")  # in flight when the sweep stops
    path = tmp_path / "searcher.pkl"
    a.save(str(path))
    b = searcher_for(space, budget, seed=3)
    b.restore(str(path))
    assert b.observations == a.observations and b.pending == a.pending
    assert b.suggest("n1") == a.suggest("n1")  # same state, same next candidate
    b.on_trial_complete("p1", {SCORE: 60.0})  # the interrupted trial reports after the restore
    assert len(b.observations) == 6
    other = searcher_for(space, budget + 1, seed=3)
    with pytest.raises(ValueError, match="budget"):
        other.restore(str(path))
    a.save_to_dir(str(tmp_path))  # what Tune calls on its experiment folder
    c = searcher_for(space, budget, seed=3)
    c.restore_from_dir(str(tmp_path))
    assert c.observations == a.observations and c.pending == a.pending


def test_get_state_round_trip_through_the_concurrency_limiter(space, budget):
    from ray.tune.search import ConcurrencyLimiter

    limited = ConcurrencyLimiter(searcher_for(space, budget), max_concurrent=2)
    assert limited.suggest("a") is not None and limited.suggest("b") is not None
    assert limited.suggest("c") is None  # q = 2 in flight
    limited.on_trial_complete("a", {SCORE: 60.0})
    assert limited.suggest("c") is not None
    inner = searcher_for(space, budget)
    inner.set_state(limited.searcher.get_state())
    assert inner.pending == limited.searcher.pending


@pytest.mark.parametrize("options", [
    {"space_form": "shared_sizes"},
    {"init": "sobol"},
    {"copula": False, "acquisition": "qnehvi"},
    {"surrogate": "saas_map", "saas_taus": 2},
])
def test_options_run_and_stay_within_budget(space, budget, options):
    searcher = searcher_for(space, budget, **options)
    configs = run(searcher, space, 6)
    assert all(0 < space.param_count(space.from_tune(c)) <= budget for c in configs)
    assert [o.source for o in searcher.observations][-2:] == ["bo", "bo"]


def test_by_default_every_module_of_an_op_shares_one_size(space, budget):
    """AutoPEFT's own space form, as published: one size per op, shared by every layer that has it."""

    def shared(config) -> bool:
        placements = space.from_tune(config).placements
        return all(len({p.size for p in placements if p.op == op}) == 1 for op in {p.op for p in placements})

    assert all(shared(c) for c in run(searcher_for(space, budget), space, 6))  # 4 initial, then BO
    assert not all(shared(c) for c in run(searcher_for(space, budget, space_form="per_layer"), space, 4))


def test_free_budget_mode_may_propose_over_the_budget(space):
    small = space.full_size() // 10
    searcher = searcher_for(space, small, budget_mode="free", n_init=6)
    configs = run(searcher, space, 6)
    assert any(space.param_count(space.from_tune(c)) > small for c in configs)


def test_saas_nuts_runs_on_a_tiny_problem(space, budget):
    pytest.importorskip("numpyro")
    searcher = searcher_for(space, budget, surrogate="saas", nuts_warmup=8, nuts_samples=8, nuts_thinning=2)
    run(searcher, space, 5)
    assert searcher.observations[-1].source == "bo"


@pytest.mark.parametrize("missing", ["numpyro", "jax"])
def test_saas_without_numpyro_says_what_to_install(space, budget, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed: importing it raises ImportError
    with pytest.raises(bo.MissingNUTS, match=r"pip install .*\[saas\]"):
        searcher_for(space, budget, surrogate="saas")
    searcher_for(space, budget, surrogate="saas_map")  # the stand-in it names needs neither


def test_copula_ranks_the_observations():
    import torch

    Y = torch.tensor([[1.0, 5.0], [2.0, 4.0], [3.0, 3.0]], dtype=torch.double)
    z = bo.Copula.fit(Y)(Y)
    assert (z[:, 0].argsort() == torch.tensor([0, 1, 2])).all() and (z[:, 1].argsort() == torch.tensor([2, 1, 0])).all()
    below = bo.Copula.fit(Y)(torch.tensor([0.0, 0.0], dtype=torch.double))
    assert torch.allclose(below, torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(bo.COPULA_CLAMP)).double())


# ---- the method ---------------------------------------------------------------------------------------
def test_select_returns_the_best_within_the_budget_and_the_pareto_set(space, budget):
    method = get_method("autopeft")
    enc = PerLayerEncoding(space)
    rng = np.random.default_rng(0)
    over = enc.config(enc.sample(rng))
    while space.param_count(space.from_tune(over)) <= budget:
        over = enc.config(enc.sample(rng))
    inside = [enc.config(enc.sample(rng, budget)) for _ in range(3)]
    results = [
        {"config": over, **result(space, over, score=99.0)},
        {"config": inside[0], **result(space, inside[0], score=80.0)},
        {"config": inside[1], **result(space, inside[1], score=math.nan)},
        {"config": inside[2], SCORE: None, RATIO: None, PARAMS: None},
    ]
    selected = method.select(SearchProblem(space, budget, 0), results)
    arch, info = selected.architecture, selected.info
    assert arch == space.from_tune(inside[0])
    assert (info["candidates"], info["finished"], info["within_budget"]) == (4, 2, 1)
    fits = {p["within_budget"] for p in info["pareto"]}
    assert fits == {True, False}  # the over-budget candidate is Pareto-optimal but not selected
    with pytest.raises(RuntimeError, match="within the budget"):
        method.select(SearchProblem(space, budget, 0), results[:1])


def test_method_contract_and_config_errors():
    from suite.harness import HarnessConfig

    method = get_method("autopeft", {"q": 3, "candidates": 40, "n_init": 10, "train_fraction": 0.1, "max_steps": 50})
    assert (method.kind, method.num_candidates(), method.max_concurrent()) == ("black-box", 40, 3)
    assert method.fidelity() == {"train_fraction": 0.1, "max_steps": 50}
    assert HarnessConfig(**method.fidelity()).train_fraction == 0.1
    with pytest.raises(ValueError, match="valid: gp, saas, saas_map"):
        get_method("autopeft", {"surrogate": "sass"})
    with pytest.raises(ValueError, match="did you mean 'n_init'"):
        get_method("autopeft", {"n_inits": 3})
    with pytest.raises(ValueError, match="n_init"):
        get_method("autopeft", {"n_init": 300})


def test_train_fraction_subsamples_the_proxy_training_split():
    from helpers import toy_experiment

    assert len(toy_experiment(train_fraction=0.25).splits.train) == 16
    assert len(toy_experiment(train_fraction=0.25, max_train_samples=10).splits.train) == 10
    assert len(toy_experiment().splits.train) == 64
