"""S3Delta: the budget root find, the gates, the second-order step, and the search end to end."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import SHARED_BACKBONES
from helpers import capped_context, toy_experiment

from methods import METHODS, get_method
from methods.s3delta import S3Delta, S3DeltaConfig
from methods.s3delta.gates import concrete_gates, keep_probs, l0_penalty, solve_shift
from methods.s3delta.method import fixed_size_space
from methods.s3delta.unrolled import adamw_virtual_step, unrolled_arch_grad
from spaces import build_space
from spaces.architecture import Architecture

# ---- the shifted global sigmoid's root find -----------------------------------------------------

RNG = np.random.default_rng(0)
ALPHAS = {
    "zeros": np.zeros(50),
    "normal": RNG.normal(size=200),
    "wide": RNG.normal(scale=300.0, size=200),
    "two_clusters": np.r_[np.full(30, -1e3), np.full(30, 1e3)],
    "one_huge": np.r_[np.zeros(99), 1e6],
    "tiny_spread": 1e-9 * RNG.normal(size=100),
}


def expected(alpha, costs, shift, beta):
    return float(torch.sigmoid((torch.as_tensor(alpha, dtype=torch.float64) - shift) / beta).numpy() @ costs)


@pytest.mark.parametrize("name", sorted(ALPHAS))
@pytest.mark.parametrize("beta", [1.0, 0.05])
@pytest.mark.parametrize("fraction", [1e-4, 0.03, 0.5, 0.97])
def test_root_find_gives_the_budget_in_expectation(name, beta, fraction):
    alpha = ALPHAS[name]
    costs = RNG.integers(1, 5000, size=alpha.size).astype(float)
    budget = fraction * costs.sum()
    for start in (None, 0.0, -1e9, 1e9, math.nan):
        shift = solve_shift(alpha, costs, budget, beta, start=start)
        assert math.isfinite(shift)
        assert abs(expected(alpha, costs, shift, beta) - budget) <= 1e-6 * budget, (name, start)


def test_root_find_warm_start_reaches_the_same_shift():
    alpha, costs = ALPHAS["normal"], np.full(200, 100.0)
    cold = solve_shift(alpha, costs, 5000.0)
    warm = solve_shift(alpha + 1e-3, costs, 5000.0, start=cold)
    assert warm == pytest.approx(cold + 1e-3, abs=1e-9)


def test_root_find_when_the_space_fits_and_bad_budgets():
    costs = np.array([10.0, 20.0])
    assert solve_shift(np.array([0.0, 1.0]), costs, 30.0) == -math.inf
    assert solve_shift(np.array([0.0, 1.0]), costs, 1e9) == -math.inf
    with pytest.raises(ValueError, match="budget must be > 0"):
        solve_shift(np.array([0.0, 1.0]), costs, 0.0)


# ---- probabilities and gates ---------------------------------------------------------------------


def test_shift_detach_keeps_values_and_makes_modules_compete():
    alpha = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    plain, detached = keep_probs(alpha, 0.5), keep_probs(alpha, 0.5, shift_detach=True)
    torch.testing.assert_close(plain, detached)
    # the normalised sum carries no gradient: raising one alpha lowers the others' p
    (grad,) = torch.autograd.grad(detached.sum(), alpha, retain_graph=True)
    torch.testing.assert_close(grad, torch.zeros_like(grad))
    (grad,) = torch.autograd.grad(detached[0], alpha)
    assert grad[0] > 0 and (grad[1:] < 0).all()
    (grad,) = torch.autograd.grad(plain[0], alpha)
    assert grad[0] > 0 and (grad[1:] == 0).all()


def test_soft_and_hard_gates():
    p = torch.tensor([0.9, 0.2, 0.6, 0.01], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(concrete_gates(p, None), p)  # validation gates: z = p
    u = torch.tensor([0.5, 0.5, 0.1, 0.999], dtype=torch.float64)
    soft = concrete_gates(p, u)
    # u = 0.5 is zero logistic noise: s = p
    torch.testing.assert_close(soft[:2], p[:2])
    assert ((soft > 0) & (soft < 1)).all()
    logit = math.log(0.6 / 0.4) + math.log(0.1 / 0.9)
    assert float(soft[2].detach()) == pytest.approx(1 / (1 + math.exp(-logit)))
    hard = concrete_gates(p, u, hard=True)
    assert hard.tolist() == [1.0, 0.0, 0.0, 1.0]  # s >= 0.5 where on (0.01 with u=0.999: s = 0.91)
    (grad,) = torch.autograd.grad(hard.sum(), p)
    assert grad[0] > 0 and grad[3] > 0 and grad[1] == 0 and grad[2] == 0  # straight-through where on
    # nothing on: the largest p is switched on, with the gradient of p
    none = concrete_gates(p, torch.full((4,), 1e-9, dtype=torch.float64), hard=True)
    assert none.tolist() == [1.0, 0.0, 0.0, 0.0]
    (grad,) = torch.autograd.grad(none.sum(), p)
    assert grad.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_stretched_gates_and_l0_penalty():
    p = torch.tensor([0.99, 0.01], dtype=torch.float64)
    z = concrete_gates(p, None, stretch=(-0.1, 1.1))
    assert z.tolist() == [1.0, 0.0]  # 0.99*1.2-0.1 > 1 clamps, 0.01*1.2-0.1 < 0 clamps
    alpha = torch.tensor([0.0, 2.0], dtype=torch.float64)
    shift = math.log(0.1 / 1.1)
    want = sum(1 / (1 + math.exp(-(a - shift))) for a in (0.0, 2.0))
    assert float(l0_penalty(alpha, 1.0, (-0.1, 1.1))) == pytest.approx(want)


# ---- the second-order step -----------------------------------------------------------------------


def _toy_problem(seed=0):
    """A two-weight regression gated by alpha: loss(w, alpha) = mean((x @ (z * w) - y)^2)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, generator=g)
    xv, yv = torch.randn(16, 3, generator=g), torch.randn(16, generator=g)
    w = torch.nn.Parameter(torch.randn(3, generator=g))
    alpha = torch.nn.Parameter(torch.tensor([0.2, -0.3, 0.1]))

    def loss(xs, ys):
        return ((xs @ (torch.sigmoid(alpha) * w) - ys) ** 2).mean()

    return w, alpha, (lambda: loss(x, y)), (lambda: loss(xv, yv))


def test_virtual_adamw_step_matches_a_real_step():
    w, _, train_loss, _ = _toy_problem()
    opt = torch.optim.AdamW([w], lr=0.05, weight_decay=0.1)
    for _ in range(2):  # a non-empty optimiser state
        opt.zero_grad()
        train_loss().backward()
        opt.step()
    (g,) = torch.autograd.grad(train_loss(), [w])
    virtual = adamw_virtual_step(opt, [w], [g])[0]
    before, state = w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()}
    assert torch.equal(w.detach(), before) and all(torch.equal(opt.state[w][k], v) for k, v in state.items())
    w.grad = g
    opt.step()
    torch.testing.assert_close(virtual, w.detach(), rtol=1e-6, atol=1e-7)


def test_unrolled_gradient_is_first_order_at_zero_lr_and_restores_weights():
    w, alpha, train_loss, val_loss = _toy_problem()
    before = w.detach().clone()
    (first,) = torch.autograd.grad(val_loss(), [alpha])
    frozen = torch.optim.AdamW([w], lr=0.0)
    torch.testing.assert_close(unrolled_arch_grad(alpha, [w], frozen, train_loss, val_loss), first)
    assert torch.equal(w.detach(), before)

    # with a real step it is dalpha L_val(w') - xi * H d: compare with an exact double backward
    adam = torch.optim.AdamW([w], lr=0.1, weight_decay=0.0)
    second = unrolled_arch_grad(alpha, [w], adam, train_loss, val_loss)
    assert torch.equal(w.detach(), before)
    (g,) = torch.autograd.grad(train_loss(), [w])
    w_virtual = adamw_virtual_step(adam, [w], [g])[0]
    with torch.no_grad():
        w.copy_(w_virtual)
    (d_alpha, d_w) = torch.autograd.grad(val_loss(), [alpha, w])
    with torch.no_grad():
        w.copy_(before)
    # exact Hessian-vector product d/dalpha (d_w L_trn . d_w) by double backward
    (g_w,) = torch.autograd.grad(train_loss(), [w], create_graph=True)
    (hvp,) = torch.autograd.grad((g_w * d_w).sum(), [alpha])
    torch.testing.assert_close(second, d_alpha - 0.1 * hvp, rtol=1e-3, atol=1e-5)
    assert not torch.allclose(second, first)


# ---- the search end to end -----------------------------------------------------------------------

CASES = [("tiny-bert", "s2", 1000), ("tiny-t5", "s1", 900)]


def _search(backbone, space_name, budget, tmp_path=None, max_steps=6, **config):
    exp = toy_experiment(backbone)
    space = build_space(space_name, exp.sites, backbone_name=backbone)
    ctx = capped_context(exp, space, budget, max_steps=max_steps, out_dir=tmp_path)
    return space, get_method("s3delta", config).search(ctx).architecture


def _trace(folder):
    """The exported alpha per module and the validation rows of a search's trace."""
    import csv

    alpha = json.loads((folder / "s3delta_alpha.json").read_text())
    with (folder / "s3delta_trace.csv").open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return alpha, rows


@pytest.mark.parametrize("backbone,space_name,budget", CASES)
def test_search_returns_a_size_one_architecture_within_budget(backbone, space_name, budget, tmp_path):
    space, arch = _search(backbone, space_name, budget, tmp_path)
    space.validate(arch)
    assert 0.8 * budget <= space.param_count(arch) <= budget
    assert {p.size for p in arch.placements if p.size is not None} == {1}
    assert arch.space == space_name and arch.backbone == backbone
    assert S3Delta().authors_recipe() == {"lora": {"scaling": 16.0}}  # lora_alpha / r = 16 / 1
    assert Architecture.from_json(arch.to_json()) == arch
    alpha, rows = _trace(tmp_path)
    assert len(set(alpha.values())) > 1  # alpha moved away from its all-zero init
    # the shifted sigmoid keeps the expected size at the budget throughout the search
    for row in rows:
        assert row["expected_params"] == pytest.approx(budget, rel=1e-6)


def test_search_is_deterministic_per_seed(tmp_path):
    _, a = _search("tiny-bert", "s2", 1000, tmp_path / "a")
    _, b = _search("tiny-bert", "s2", 1000, tmp_path / "b")
    assert a.to_dict() == b.to_dict()
    assert _trace(tmp_path / "a") == _trace(tmp_path / "b")


def test_second_order_runs_and_moves_alpha_differently(tmp_path):
    _search("tiny-bert", "s2", 1000, tmp_path / "first", max_steps=3, eval_every=0, darts="first_order")
    space, arch = _search("tiny-bert", "s2", 1000, tmp_path / "second", max_steps=3, eval_every=0,
                          darts="second_order")
    assert 800 <= space.param_count(arch) <= 1000
    first = json.loads((tmp_path / "first" / "s3delta_alpha.json").read_text())
    second = json.loads((tmp_path / "second" / "s3delta_alpha.json").read_text())
    assert all(math.isfinite(v) for v in second.values())
    assert max(abs(first[k] - second[k]) for k in first) > 1e-6


def test_the_default_is_second_order_darts_as_published(tmp_path):
    """No option given: the unrolled second-order step (the same alpha as asking for it), unlabelled."""
    for name, config in (("default", {}), ("second", {"darts": "second_order"})):
        _search("tiny-bert", "s2", 1000, tmp_path / name, max_steps=3, eval_every=0, **config)
    alpha = {name: json.loads((tmp_path / name / "s3delta_alpha.json").read_text()) for name in ("default", "second")}
    assert alpha["default"] == alpha["second"]
    assert S3Delta().settings() == [] and S3Delta({"darts": "first_order"}).settings() == ["1st-order DARTS"]


@pytest.mark.parametrize("config", [{"hard_forward": True}, {"strategy": "l0", "lambda0": 0.1, "stretch_left": -0.1,
                                                               "stretch_right": 1.1}, {"shift_detach": False}])
def test_search_variants_stay_within_budget(config):
    space, arch = _search("tiny-t5", "s1", 900, max_steps=3, eval_every=0, **config)
    assert 0.8 * 900 <= space.param_count(arch) <= 900


def test_budget_edge_cases():
    exp = toy_experiment("tiny-t5")
    space = build_space("s1", exp.sites, backbone_name="tiny-t5")
    size_one = fixed_size_space(space, 1).full_size()
    with pytest.warns(UserWarning, match="less than 0.8 x the budget"):
        arch = S3Delta().search(capped_context(exp, space, 10 * size_one, max_steps=2)).architecture
    assert space.param_count(arch) == size_one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arch = S3Delta().search(capped_context(exp, space, size_one, max_steps=2)).architecture
    assert space.param_count(arch) == size_one
    with pytest.raises(ValueError, match="below the smallest module"):
        S3Delta().search(capped_context(exp, space, 10, max_steps=2))
    with pytest.raises(ValueError, match="module_size 2 is not a candidate size"):
        S3Delta({"module_size": 2}).search(capped_context(exp, space, 900, max_steps=2))


def test_module_size_option():
    space, arch = _search("tiny-bert", "s2", 3000, max_steps=2, module_size=4)
    assert {p.size for p in arch.placements if p.size is not None} == {4}
    assert S3Delta({"module_size": 4}).authors_recipe() == {"lora": {"scaling": 4.0}}
    assert 0.8 * 3000 <= space.param_count(arch) <= 3000


@pytest.mark.skipif(not (SHARED_BACKBONES / "t5-large").is_dir(), reason="../shared/backbones is absent")
def test_s3delta_m_space_on_t5_large_matches_the_paper():
    from suite.backbones import backbone_sites

    sites = backbone_sites(str(SHARED_BACKBONES / "t5-large"), vocab_size=32100)
    space = fixed_size_space(build_space("s2", sites), 1)
    assert len(space) == 916 and space.full_size() == 1_881_088  # methods.md §2.1: 25.5‱


# ---- config --------------------------------------------------------------------------------------


def test_registered_and_config_round_trip():
    assert "s3delta" in METHODS and METHODS.get("s3delta") is S3Delta
    method = get_method("s3delta", {"darts": "second_order", "beta": 0.5, "eval_every": 3})
    again = S3Delta(json.loads(json.dumps(method.config_dict())))
    assert again.config == method.config
    with pytest.raises(ValueError, match="unknown S3DeltaConfig key 'betta'.*did you mean 'beta'"):
        S3Delta({"betta": 1.0})


@pytest.mark.parametrize("bad,match", [
    ({"strategy": "tau"}, "unknown strategy 'tau'; valid: shift, l0"),
    ({"darts": "third"}, "unknown darts 'third'; valid: first_order, second_order"),
    ({"beta": 0}, "beta must be > 0"),
    ({"lambda0": 0.1}, "needs strategy='l0'"),
    ({"strategy": "l0", "lambda0": 0.1}, "needs stretch_left < 0"),
    ({"stretch_right": 0.5}, "stretch must satisfy"),
    ({"eval_every": -1}, "eval_every must be None or an int >= 0"),
    ({"hard_forward": "yes"}, "hard_forward must be true or false"),
    ({"module_size": 0}, "module_size must be a positive int"),
    ({"arch_lr": 0}, "arch_lr must be > 0"),
    ({"lora_scaling": -1.0}, "lora_scaling must be > 0 or None"),
])
def test_bad_config_values_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        S3DeltaConfig(**bad)


def test_greedy_fill_skips_what_does_not_fit_and_goes_on():
    from methods.knapsack import greedy_fill

    assert greedy_fill([3.0, 2.0, 1.0], [6, 6, 3], 9) == [True, False, True]
    assert greedy_fill(torch.tensor([1.0, 1.0, 5.0]), [4, 4, 4], 8) == [True, False, True]  # ties by index
    assert greedy_fill([1.0], [10], 5) == [False]
    with pytest.raises(ValueError, match="same shape"):
        greedy_fill([1.0, 2.0], [1], 5)
