"""BIPEFT: each equation on hand-computed examples, the Gumbel sampler, the trigger, the selections,
the budget fit, and end-to-end searches on tiny T5 and BERT in S1 and S2.

Equation numbers are the paper's (Chang et al., Findings of EMNLP 2024).
"""

from __future__ import annotations

import csv
import functools
import json
import math

import pytest
import torch
from helpers import capped_context, tiny_inputs, tiny_model, toy_experiment

from methods import get_method
from methods.bipeft.budget import fit_budget
from methods.bipeft.config import BIPEFTConfig
from methods.bipeft.early_selection import EarlySelector, Selection
from methods.bipeft.equations import (
    LogitWindow,
    ModuleTable,
    SelectionState,
    dimension_stability,
    expected_params,
    module_sizes,
    modules_to_fix_count,
    potential_dimensions,
    reduction,
    select_removals,
)
from methods.bipeft.gates import ArchSnapshot
from methods.bipeft.gumbel import gumbel_argmax, gumbel_softmax_st, temperature
from methods.bipeft.method import BIPEFT
from methods.bipeft.sensitivity import (
    GradientTape,
    ema,
    gradient_cosine,
    sensitivity,
    weight_gradient_magnitude,
)
from methods.bipeft.trigger import StabilityTrigger, importance_indicator, stability
from spaces import build_space
from spaces.inject import Supernet
from spaces.sites import describe

# ---- Eqs. 1-4: sensitivity --------------------------------------------------------------------------
# Module 0 has two tensors, [1, -2] and [3]; module 1 has one, [2, 2].
W = torch.tensor([1.0, -2.0, 3.0, 2.0, 2.0])
G_TRA = torch.tensor([0.5, 1.0, -1.0, 1.0, 0.0])
G_VAL = torch.tensor([1.0, 0.0, 2.0, 0.0, 0.0])
ENTRY_MODULE = torch.tensor([0, 0, 0, 1, 1])
ENTRY_TENSOR = torch.tensor([0, 0, 1, 2, 2])
COUNTS = torch.tensor([3.0, 2.0])


def test_eq2_weight_gradient_magnitude():
    f = weight_gradient_magnitude(W, G_TRA, ENTRY_MODULE, COUNTS)
    # module 0: (|1*0.5| + |-2*1| + |3*-1|) / 3; module 1: (|2*1| + 0) / 2
    torch.testing.assert_close(f, torch.tensor([5.5 / 3, 1.0]))


def test_eq3_gradient_cosine_per_module():
    alpha = gradient_cosine(G_TRA, G_VAL, ENTRY_MODULE, 2)
    # module 0: (0.5 - 2) / (sqrt(2.25) * sqrt(5)); module 1 has a zero D_val gradient -> 0
    torch.testing.assert_close(alpha, torch.tensor([-1 / math.sqrt(5), 0.0]))


def test_eq1_sensitivity():
    f_tra = weight_gradient_magnitude(W, G_TRA, ENTRY_MODULE, COUNTS)
    f_val = weight_gradient_magnitude(W, G_VAL, ENTRY_MODULE, COUNTS)
    s = sensitivity(f_tra, f_val, gradient_cosine(G_TRA, G_VAL, ENTRY_MODULE, 2))
    torch.testing.assert_close(s, torch.tensor([5.5 / 3 - 7 / (3 * math.sqrt(5)), 1.0]))


def test_eq3_code_compat_is_the_mean_tensor_cosine_of_weight_gradient_products():
    per_tensor = gradient_cosine(W * G_TRA, W * G_VAL, ENTRY_TENSOR, 3)
    # tensor 0: cos([0.5, -2], [1, 0]); tensor 1: cos([-3], [6]) = -1; tensor 2: zero -> 0
    torch.testing.assert_close(per_tensor, torch.tensor([0.5 / math.sqrt(4.25), -1.0, 0.0]))


def test_eq4_ema_updates_only_kept_modules():
    out = ema(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), 0.5, torch.tensor([True, False]))
    torch.testing.assert_close(out, torch.tensor([2.0, 2.0]))
    # gamma = 1 never learns anything new (paper, Table 7)
    torch.testing.assert_close(ema(torch.zeros(2), torch.ones(2), 1.0, torch.ones(2, dtype=torch.bool)), torch.zeros(2))


def test_gradient_tape_matches_a_direct_computation_on_a_supernet():
    model = tiny_model("tiny-bert")
    space = build_space("s2", describe(model))
    net = Supernet(model, space)
    tape = GradientTape(net)
    torch.manual_seed(0)

    def fill():
        for op in net.modules:
            for p in op.parameters():
                p.grad = torch.randn_like(p)

    fill()
    tra = tape.capture()
    grads_tra = [[p.grad.clone() for p in op.parameters()] for op in net.modules]
    fill()
    net.modules[0].B.grad = None  # a parameter without a gradient counts as zeros
    val = tape.capture()
    grads_val = [[(p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for p in op.parameters()]
                 for op in net.modules]
    counts = torch.tensor([float(sum(p.numel() for p in op.parameters())) for op in net.modules])
    scores = tape.scores(tra, val, counts)
    for i, op in enumerate(net.modules):
        w = torch.cat([p.detach().flatten() for p in op.parameters()]).double()
        gt = torch.cat([g.flatten() for g in grads_tra[i]]).double()
        gv = torch.cat([g.flatten() for g in grads_val[i]]).double()
        expected = (w * gt).abs().sum() / counts[i] + torch.nn.functional.cosine_similarity(gt, gv, dim=0) * (
            (w * gv).abs().sum() / counts[i])
        torch.testing.assert_close(scores[i], expected, rtol=1e-4, atol=1e-6)
    net.remove(3)
    tape.refresh()
    assert len(tape.params) == sum(len(list(op.parameters())) for op in net.modules if not op.removed)
    assert tape.scores(tape.capture(), tape.capture(), counts)[3] == 0


# ---- importance indicator and Eq. 5 ---------------------------------------------------------------------
def test_importance_indicator_stops_at_the_first_overflow():
    scores, sizes = torch.tensor([0.9, 0.5, 0.7, 0.1]), torch.tensor([50.0, 20.0, 60.0, 10.0])
    kept = torch.ones(4, dtype=torch.bool)
    assert importance_indicator(scores, sizes, kept, 100).tolist() == [True, False, False, False]
    # the authors' greedy knapsack skips module 2 (110 > 100) and keeps going
    assert importance_indicator(scores, sizes, kept, 100, skip_and_continue=True).tolist() == [True, True, False, True]
    kept[0] = False  # removed modules are never marked
    assert importance_indicator(scores, sizes, kept, 100).tolist() == [False, True, True, True]


def test_eq5_stability_consecutive_and_window_forms():
    a, b, c = (torch.tensor(v, dtype=torch.bool) for v in ([1, 1, 0], [1, 1, 0], [1, 0, 1]))
    # consecutive (paper): mean(cos(b, a), cos(c, b)) = mean(1, 1/2); window (code): mean(cos(c, b), cos(c, a))
    assert stability([a, b, c], 2) == pytest.approx(0.75)
    assert stability([a, b, c], 2, form="window") == pytest.approx(0.5)
    assert stability([a, b], 2) is None  # H + 1 indicators are needed


def test_trigger_fires_on_a_stable_indicator_sequence():
    trigger = StabilityTrigger(window=5, tau=0.85)
    indicator = torch.tensor([1, 1, 0, 1, 0, 0], dtype=torch.bool)
    fired = [trigger.update(indicator) for _ in range(8)]
    assert fired == [False] * 5 + [True] * 3  # from the sixth indicator on: beta = 1


def test_trigger_does_not_fire_on_an_unstable_sequence():
    trigger = StabilityTrigger(window=5, tau=0.85)
    first = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)
    fired = [trigger.update(first if t % 2 == 0 else ~first) for t in range(20)]
    assert not any(fired) and trigger.beta == 0.0
    # one module in three flickering: cos = 2/3 < 0.85
    drift = StabilityTrigger(window=5, tau=0.85)
    a = torch.tensor([1, 1, 1, 0], dtype=torch.bool)
    b = torch.tensor([1, 1, 0, 1], dtype=torch.bool)
    assert not any(drift.update(a if t % 2 == 0 else b) for t in range(20))


# ---- Eqs. 6-8: expected parameters, reduction, module selection ------------------------------------------
def small_table() -> ModuleTable:
    q = torch.tensor([[10.0, 40, 80], [5, 5, 5], [20, 80, 160], [30, 120, 240]], dtype=torch.float64)
    return ModuleTable(q, torch.tensor([True, False, True, True]), (1, 4, 8))


def test_eqs_7_8_expected_parameters():
    table = small_table()
    state = SelectionState.initial(table)
    state.fixed[2], state.fixed_index[2] = True, 1  # module 2 fixed at size 4
    state.kept[3] = False  # module 3 removed
    probs = torch.tensor([[0.2, 0.3, 0.5], [1 / 3] * 3, [0.9, 0.05, 0.05], [0.0, 0.0, 1.0]], dtype=torch.float64)
    sizes = module_sizes(table, state, probs)
    torch.testing.assert_close(sizes[:3], torch.tensor([2 + 12 + 40.0, 5.0, 80.0], dtype=torch.float64))
    keep = torch.tensor([0.5, 0.8, 0.25, 0.9], dtype=torch.float64)
    assert expected_params(keep, state, sizes) == pytest.approx(0.5 * 54 + 0.8 * 5 + 0.25 * 80)
    assert expected_params(keep, state, sizes, hard=True) == pytest.approx(54 + 5 + 80)


def test_eq6_reduction_spreads_the_excess_over_the_triggers_left():
    assert reduction(500, 100, max_triggers=100, done=0) == pytest.approx(4.0)
    assert reduction(500, 100, max_triggers=100, done=99) == pytest.approx(400.0)  # the last trigger takes the rest


def test_module_selection_removes_the_least_sensitive_until_the_reduction_is_reached():
    scores = torch.tensor([0.1, 0.3, 0.2, 0.05], dtype=torch.float64)
    sizes = torch.tensor([30.0, 10, 50, 40], dtype=torch.float64)
    kept = torch.ones(4, dtype=torch.bool)
    # ascending sensitivity: 3 (40), 0 (30), 2 (50), 1 (10); removed before each: 0, 40, 70, 120
    assert select_removals(scores, sizes, kept, 75) == [3, 0, 2]
    assert select_removals(scores, sizes, kept, 60) == [3, 0]
    assert select_removals(scores, sizes, kept, 40) == [3]
    assert select_removals(scores, sizes, kept, 5) == [3]  # progress even when R_z is smaller than a module
    assert select_removals(scores, sizes, kept, 0) == [] and select_removals(scores, sizes, kept, -10) == []
    # the authors' greedy walk: 3 fits (40), 0 and 2 would exceed 60, 1 fits (50)
    assert select_removals(scores, sizes, kept, 60, skip_and_continue=True) == [3, 1]
    assert select_removals(scores, sizes, kept, 5, skip_and_continue=True) == [3]  # nothing fits: the code forces one
    assert select_removals(scores, sizes, kept, -10, skip_and_continue=True) == []
    kept[3] = False
    assert select_removals(scores, sizes, kept, 75) == [0, 2]


def test_module_table_uses_the_exact_per_size_counts():
    space = build_space("s2", describe(tiny_model("tiny-bert")))
    table = ModuleTable.from_space(space)
    for i, dim in enumerate(space.dims()):
        expected = space.choice_params(i)[1:] * (1 if dim.sizes else len(space.sizes))
        assert table.q[i].tolist() == expected


# ---- Eqs. 9-10: dimension stability and fixing ------------------------------------------------------------
def test_eq9_dimension_stability():
    window = LogitWindow()
    for logits in ([0.0, 0.0], [1.0, 0.0], [math.log(3), 0.0]):
        window.add(torch.tensor([logits]))
    sigma0 = torch.tensor([0.0, 1.0, math.log(3)]).std().item()
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL([.5, .5] || [.75, .25])
    lam = dimension_stability(window.first, window.last, window.std())
    assert lam.item() == pytest.approx((sigma0 + 0.0) / 2 * kl)
    reverse = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert dimension_stability(window.first, window.last, window.std(), reverse_kl=True).item() == pytest.approx(
        sigma0 / 2 * reverse)
    window.restart()  # the next window starts at the trigger step's snapshot
    assert window.count == 1 and window.std().abs().sum() == 0
    torch.testing.assert_close(window.first, torch.tensor([[math.log(3), 0.0]], dtype=torch.float64))


def test_eq10_number_of_modules_to_fix():
    assert modules_to_fix_count(10, 0.9, max_triggers=100, done=95) == 1  # floor(9 / 5)
    assert modules_to_fix_count(10, 0.9, max_triggers=100, done=99) == 9
    assert modules_to_fix_count(10, float("nan"), max_triggers=100, done=99) == 0


def test_eq10_potential_dimensions():
    table = small_table()
    state = SelectionState.initial(table)
    state.fixed[2], state.fixed_index[2] = True, 1
    state.kept[3], state.fixed[3] = False, True
    argmax = torch.tensor([2, 0, 0, 2])
    assert potential_dimensions(table, state, argmax).tolist() == [8.0, 4.0, 0.0]  # sized modules 0, 2, 3
    assert potential_dimensions(table, state, argmax, index_form=True).tolist() == [2.0, 1.0, 2.0]


def snapshot(keep_prob, size_probs, size_index, phi) -> ArchSnapshot:
    return ArchSnapshot(keep_prob, keep_prob > 0.5, size_probs, size_index, phi)


def test_selector_trigger_removes_then_fixes():
    table = small_table()
    config = BIPEFTConfig(max_triggers=2, window=1, tau=0.9, budget_count="expected", budget_floor=0.0)
    selector = EarlySelector(table, budget=110, config=config)
    selector.update_scores(torch.tensor([4.0, 1.0, 3.0, 0.5], dtype=torch.float64))
    probs = torch.tensor([[0.1, 0.1, 0.8], [1 / 3] * 3, [0.1, 0.8, 0.1], [0.8, 0.1, 0.1]], dtype=torch.float64)
    index = torch.tensor([2, 0, 1, 0])
    keep = torch.full((4,), 0.5, dtype=torch.float64)
    phi = [torch.zeros(3, 3, dtype=torch.float64), torch.tensor([[0, 0, 0.5], [0, 2.0, 0], [1.0, 0, 0]])]
    first = selector.observe(snapshot(keep, probs, index, phi[0]))
    assert not first.fired and first.beta is None
    obs = selector.observe(snapshot(keep, probs, index, phi[1]))
    assert obs.fired and obs.beta == 1.0
    # C = [0.1*10 + 0.1*40 + 0.8*80, 5, 0.1*20 + 0.8*80 + 0.1*160, 0.8*30 + 0.1*120 + 0.1*240]
    torch.testing.assert_close(obs.sizes, torch.tensor([69.0, 5.0, 82.0, 60.0], dtype=torch.float64))
    assert obs.expected == pytest.approx(0.5 * (69 + 5 + 82 + 60))
    event = selector.select(obs, snapshot(keep, probs, index, phi[1]))
    # R = (108 - 110) / 2 < 0: within the budget in expectation, nothing is removed
    assert event.reduction == pytest.approx(-1.0) and event.removed == []
    # v_0 = v_1 = [8, 4, 1] -> cos = 1; Y = floor(3 * 1 / 2) = 1; the lowest lambda: module 0, whose
    # logits moved least (0.5 against 2 and 1)
    assert event.to_fix == 1 and event.fixed == [(0, 8)]
    assert selector.state.fixed[0] and selector.state.fixed_index[0] == 2 and selector.done == 1
    assert selector.counts[0] == 80 and selector.sensitivity_counts[0] == 80  # |M_0| is now its fixed size
    obs = selector.observe(snapshot(keep, probs, index, phi[1]))
    assert obs.fired and obs.expected == pytest.approx(0.5 * (80 + 5 + 82 + 60))
    event = selector.select(obs, snapshot(keep, probs, index, phi[1]))
    # last trigger: R = E - B = 3.5: the least sensitive module (3) goes; v = [8, 4, 0] against [8, 4, 1]:
    # cos = 80 / (9 * sqrt(80)); Y = floor(1 * cos / 1) = 0 (module 2 is the only unfixed one left)
    assert event.reduction == pytest.approx(3.5) and event.removed == [3]
    assert event.cosine == pytest.approx(math.sqrt(80) / 9) and event.to_fix == 0 and event.fixed == []
    assert selector.finished and selector.state.kept.tolist() == [True, True, True, False]
    assert selector.active_params() == 80 + 5 + 160  # module 2 still trains at its largest size


def test_selector_removes_least_sensitive_when_far_over_budget():
    table = small_table()
    selector = EarlySelector(table, budget=50, config=BIPEFTConfig(max_triggers=1, window=1, tau=0.0,
                                                                   budget_count="expected", budget_floor=0.0))
    selector.update_scores(torch.tensor([4.0, 1.0, 3.0, 0.5], dtype=torch.float64))
    probs = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    snap = snapshot(torch.ones(4, dtype=torch.float64), probs, torch.zeros(4, dtype=torch.long), torch.zeros(3, 3))
    selector.observe(snap)
    obs = selector.observe(snap)
    event = selector.select(obs, snap)
    # E = 130/3 + 5 + 260/3 + 130 = 265, R = 215: remove 3 (130), 1 (5), 2 (86.7); 221.7 reaches 215
    assert event.removed == [3, 1, 2]
    assert selector.state.kept.tolist() == [True, False, False, False]


def test_exported_count_brings_the_kept_set_to_the_budget_and_never_below_the_floor():
    """The default count: E_t is what the search would export now (kept modules at argmax size); the
    last trigger removes the whole remaining excess, and no removal goes below 0.8 B."""
    table = small_table()  # q: [10, 40, 80], [5, 5, 5], [20, 80, 160], [30, 120, 240]
    selector = EarlySelector(table, budget=200, config=BIPEFTConfig(max_triggers=2, window=1, tau=0.0))
    selector.update_scores(torch.tensor([4.0, 1.0, 3.0, 0.5], dtype=torch.float64))
    probs = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    snap = snapshot(torch.full((4,), 0.5, dtype=torch.float64), probs, torch.tensor([2, 0, 1, 1]), torch.zeros(3, 3))
    selector.observe(snap)
    obs = selector.observe(snap)
    assert obs.kept_params == obs.expected == 80 + 5 + 80 + 120  # not 0.5 x expected sizes
    event = selector.select(obs, snap)  # R = (285 - 200) / 2 = 42.5: module 3 (120) reaches it
    assert event.reduction == pytest.approx(42.5) and event.removed == [3]
    obs = selector.observe(snap)
    assert obs.expected == 165  # already at or below B: nothing to remove at the last trigger
    assert selector.select(obs, snap).removed == [] and selector.finished
    # the floor: 0.8 * 200 = 160 of 165 kept; module 1 (5) fits above it, module 2 (80) would not
    assert select_removals(selector.scores, obs.export_sizes, selector.state.kept, 100,
                           room=obs.kept_params - 160, actual=obs.export_sizes) == [1]


def test_the_authors_forced_removal_never_empties_the_supernet():
    """code_compat removes the least sensitive module when nothing fits R_z; never below the floor."""
    scores, sizes = torch.tensor([0.5, 1.0]), torch.tensor([100.0, 100.0])
    kept = torch.ones(2, dtype=torch.bool)
    assert select_removals(scores, sizes, kept, 10, skip_and_continue=True) == [0]  # the code
    assert select_removals(scores, sizes, kept, 10, skip_and_continue=True, room=50.0, actual=sizes) == []


# ---- Gumbel-softmax ----------------------------------------------------------------------------------------
def test_gumbel_straight_through_is_one_hot_forward_and_soft_backward():
    logits = torch.tensor([[0.3, -0.2, 1.0], [0.0, 0.5, -1.0]], requires_grad=True)
    noise = torch.tensor([[0.1, 0.2, -0.3], [1.2, 0.0, 0.4]])
    weights = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    y = gumbel_softmax_st(logits, 0.7, torch.Generator(), noise=noise)
    assert y.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]  # argmax of logits + noise
    (y * weights).sum().backward()
    soft_logits = logits.detach().clone().requires_grad_()
    (((soft_logits + noise) / 0.7).softmax(-1) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, soft_logits.grad)


def test_gumbel_samples_follow_the_softmax():
    logits = torch.tensor([0.0, 1.0, -1.0]).expand(20000, 3)
    counts = torch.bincount(gumbel_argmax(logits, torch.Generator().manual_seed(0)), minlength=3) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.0, 1.0, -1.0]).softmax(-1), atol=0.015, rtol=0)


def test_temperature_schedules():
    assert temperature(0, 12, 4, 5.0, 1.0, "linear") == 5.0
    assert temperature(11, 12, 4, 5.0, 1.0, "linear") == pytest.approx(1.0)
    epoch = [temperature(s, 12, 4, 5.0, 1.0, "epoch") for s in (0, 3, 4, 11)]
    assert epoch == pytest.approx([5.0, 5.0, 5 - 4 / 3, 5 - 8 / 3])  # the authors' per-epoch form
    assert temperature(7, 12, 4, 5.0, 1.0, "constant") == 5.0


# ---- budget fit -----------------------------------------------------------------------------------------------
@functools.cache
def tiny_space(backbone: str, name: str):
    return build_space(name, describe(tiny_model(backbone)))


def test_fit_budget_trims_the_least_important_then_fills():
    space = tiny_space("tiny-bert", "s2")
    full = space.to_choices(space.full())
    importance = [float(i) for i in range(len(space))]  # module 0 least important
    fit = fit_budget(space, full, full, importance, budget=3000, floor=0.8)
    assert 2400 <= fit.params <= 3000 and fit.params == space.param_count(space.from_choices(fit.choices))
    assert fit.dropped[:3] == [0, 1, 2] and all(fit.choices[i] for i in range(len(space)) if i not in fit.dropped)
    empty = [0] * len(space)
    fill = fit_budget(space, empty, full, importance, budget=3000, floor=0.8)
    assert 2400 <= fill.params <= 3000 and fill.added[0] == len(space) - 1 and not fill.dropped
    within = fit_budget(space, fill.choices, full, importance, budget=3000, floor=0.8)
    assert within.choices == fill.choices and not (within.dropped or within.added or within.grown)


def test_fit_budget_grows_sizes_when_nothing_is_absent():
    space = tiny_space("tiny-t5", "s1")
    smallest = [d.sizes[0] for d in space.dims()]
    budget = space.param_count(space.from_choices(smallest)) * 3
    fit = fit_budget(space, smallest, smallest, [1.0] * len(space), budget=budget, floor=0.8)
    assert 0.8 * budget <= fit.params <= budget and fit.grown and not fit.added


# ---- the search ----------------------------------------------------------------------------------------------
@functools.cache
def experiment(backbone: str, epochs: int = 3):
    return toy_experiment(backbone, epochs=epochs)


def run_search(backbone: str, space_name: str, budget: int, out_dir=None, max_steps=None, seed=0, **config):
    """The architecture, the search's info, the space and the reported rows of a BIPEFT search."""
    exp = toy_experiment(backbone, seed, epochs=3)
    space = build_space(space_name, exp.sites, backbone_name=backbone)
    rows: list[dict] = []
    ctx = capped_context(exp, space, budget, max_steps, report=rows.append, out_dir=out_dir)
    result = BIPEFT({"report_every": 1, **config}).search(ctx)
    return result.architecture, result.info, space, rows


@pytest.mark.parametrize("backbone", ["tiny-t5", "tiny-bert"])
@pytest.mark.parametrize("space_name, budget", [("s1", 1500), ("s2", 2500)])
def test_search_exports_within_budget(backbone, space_name, budget):
    arch, info, space, rows = run_search(backbone, space_name, budget, max_triggers=4, window=2, tau=0.6)
    assert 0.8 * budget <= space.param_count(arch) <= budget
    assert info["params"] == space.param_count(arch) and info["budget"] == budget
    assert info["stop_reason"] in ("max_triggers", "step_cap") and info["steps"] <= info["planned_steps"]


def test_triggers_select_early_and_end_the_search(tmp_path):
    budget = 1200  # enough that some sized modules stay (at 600 the kept set is size-less modules only)
    arch, info, space, rows = run_search("tiny-bert", "s2", budget, out_dir=tmp_path,
                                           max_triggers=3, window=2, tau=0.5)
    assert info["stop_reason"] == "max_triggers" and info["triggers"] == 3 and info["steps"] < info["planned_steps"]
    search_rows = [r for r in rows if r["phase"] == "search"]
    # modules removed and sizes fixed (a module fixed at one trigger may be removed at a later one)
    assert info["removed_modules"] > 0 and sum(r["fixed"] for r in search_rows) > 0
    assert len(search_rows) == info["steps"] and sum(r["triggered"] for r in search_rows) == 3
    active = [r["active_params"] for r in search_rows]
    assert active[-1] < active[0] and all(b <= a for a, b in zip(active, active[1:]))
    assert all(r["triggers"] == sum(x["triggered"] for x in search_rows[:k + 1]) for k, r in enumerate(search_rows))
    for key in ("loss_weights", "loss_theta", "loss_phi", "beta", "expected_params", "active_modules", "temperature"):
        assert key in search_rows[0]
    assert rows[-1]["phase"] == "export" and rows[-1]["active_params"] == space.param_count(arch)
    with open(tmp_path / info["trace_csv"]) as f:
        assert len(list(csv.DictReader(f))) == info["steps"] + 1
    assert (tmp_path / info["trace_plot"]).stat().st_size > 0


@pytest.mark.slow
def test_the_search_itself_reaches_the_budget_in_most_seeds():
    """Tiny T5 and tiny BERT, S1 and S2, five seeds each: the kept set at the last trigger is within
    [0.8 B, B] with nothing dropped or added by the export fit (16 of 20 when written: tiny BERT's S1
    has only six modules of 65-552 parameters, too coarse for a 970-parameter budget in 4 of 5 seeds).
    11-12 of 20 since the sensitivity counts what trained (issue 20): more sized modules stay, and
    the argmax size of one not fixed yet still moves after the last removal (Eq. 10 fixes few before
    the last triggers), so the exported size drifts, mostly below 0.8 B (the fit then adds a module)."""
    own = []
    for backbone in ("tiny-t5", "tiny-bert"):
        for space_name, fraction in (("s1", 0.3), ("s2", 0.1)):
            for seed in range(5):
                exp = toy_experiment(backbone, seed=seed, epochs=12)
                space = build_space(space_name, exp.sites, backbone_name=backbone)
                budget = int(space.full_size() * fraction)
                info = BIPEFT({"max_triggers": 20, "window": 2}).search(exp.search_context(space, budget)).info
                assert info["stop_reason"] == "max_triggers"
                fit = info["export"]
                assert 0.8 * budget <= fit["params"] <= budget
                own.append(0.8 * budget <= fit["params_before"] <= budget and not fit["dropped"] and not fit["added"])
    assert sum(own) >= 10, f"the search reached the budget itself in {sum(own)} of {len(own)} searches"


def test_step_cap_is_reported_when_triggers_do_not_all_fire():
    arch, info, space, rows = run_search("tiny-t5", "s1", 1500, max_steps=4)
    assert info["stop_reason"] == "step_cap" and info["steps"] == 4 and info["triggers"] < 100
    assert rows[-1]["phase"] == "export" and rows[-1]["stop_reason"] == "step_cap"


def test_code_compat_alternates_theta_and_phi_and_waits_for_the_warmup():
    arch, info, space, rows = run_search("tiny-bert", "s2", 2500, code_compat=True, window=2)
    search_rows = [r for r in rows if r["phase"] == "search"]
    odd = search_rows[0::2]  # steps 1, 3, ...: Θ; steps 2, 4, ...: Φ
    assert all(not math.isnan(r["loss_theta"]) and math.isnan(r["loss_phi"]) for r in odd)
    assert all(math.isnan(r["loss_theta"]) and not math.isnan(r["loss_phi"]) for r in search_rows[1::2])
    # one warm-up epoch (4 steps) before any indicator, then H + 1 = 3 indicators before beta exists
    betas = [r["beta"] for r in search_rows]
    assert all(math.isnan(b) for b in betas[:6]) and not math.isnan(betas[6])
    assert 0.8 * 2500 <= space.param_count(arch) <= 2500


def test_apply_skips_removed_modules_and_slices_fixed_ones():
    model = tiny_model("tiny-bert")
    space = build_space("s2", describe(model))
    net = Supernet(model, space)
    tape = GradientTape(net)

    class _Run:  # the two attributes BIPEFT._apply uses
        def __init__(self):
            self.net, self.changed = net, 0

        def modules_changed(self):
            self.changed += 1

    lora = [i for i, d in enumerate(space.dims()) if d.op == "lora"]
    calls = []
    removed_op, fixed_op = net.modules[lora[0]], net.modules[lora[1]]
    original = removed_op.delta
    removed_op.delta = lambda *a, **k: calls.append(1) or original(*a, **k)
    run = _Run()
    BIPEFT._apply(run, tape, Selection(reduction=1.0, removed=[lora[0]], fixed=[(lora[1], 4)]))
    model(**tiny_inputs("tiny-bert")).logits.sum().backward()
    assert calls == [] and removed_op.removed and run.changed == 1
    assert fixed_op.size_fixed and fixed_op.active_size == 4 and fixed_op.size_probs is None
    assert fixed_op.B.grad[:, 4:].abs().sum() == 0 and fixed_op.B.grad[:, :4].abs().sum() > 0
    assert all(p is not removed_op.A for p in tape.params)


def test_search_is_deterministic_and_the_seed_matters():
    def search(seed: int) -> tuple:
        """The architecture and the search's trace as text (NaN included), its timings left out."""
        arch, info, _, rows = run_search("tiny-t5", "s1", 1500, seed=seed, max_triggers=4, window=2, tau=0.6)
        untimed = [{k: v for k, v in row.items() if not k.endswith("_s")} for row in [info, *rows]]
        return arch, json.dumps(untimed)

    first, again, other = search(0), search(0), search(1)
    assert first == again
    assert other[0] != first[0] and other[1] != first[1]  # another seed: another search and architecture


def test_budget_below_every_module_is_a_clear_error():
    exp = experiment("tiny-bert")
    ctx = exp.search_context(build_space("s2", exp.sites), budget=10)
    with pytest.raises(ValueError, match="below the smallest module"):
        BIPEFT().search(ctx)


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="max_triggers"):
        BIPEFT({"max_triggers": 0})
    with pytest.raises(ValueError, match="tau"):
        BIPEFT({"tau": 1.5})
    with pytest.raises(ValueError, match="temperature_schedule 'cosine'; valid: linear, epoch, constant"):
        BIPEFT({"temperature_schedule": "cosine"})
    assert BIPEFT({"code_compat": True}).config.effective_warmup_epochs == 1.0
    assert BIPEFT().config.effective_warmup_epochs == 0.0


# ---- ablations -------------------------------------------------------------------------------------------------
def test_b2d_removes_the_dropped_modules_at_the_stage_switch():
    exp = experiment("tiny-bert")
    space = build_space("s2", exp.sites)
    rows: list[dict] = []
    get_method("bipeft-b2d", {"report_every": 1}).search(exp.search_context(space, 2500, report=rows.append))
    steps = [r for r in rows if r["phase"] == "search"]
    assert [r["stage"] for r in steps] == [1] * 6 + [2] * 6
    assert steps[5]["active_modules"] == len(space) and steps[6]["active_modules"] < len(space)


def test_d2b_fixes_every_size_at_the_stage_switch():
    exp = experiment("tiny-t5")
    space = build_space("s1", exp.sites)
    rows: list[dict] = []
    get_method("bipeft-d2b", {"report_every": 1}).search(exp.search_context(space, 1500, report=rows.append))
    steps = [r for r in rows if r["phase"] == "search"]
    assert steps[5]["active_params"] == space.full_size() and steps[6]["active_params"] < space.full_size()


def test_code_compat_selector_hard_keep_for_the_last_ten_triggers_and_fix_counts():
    table = small_table()
    selector = EarlySelector(table, budget=1000, config=BIPEFTConfig(max_triggers=11, window=1, code_compat=True))
    probs = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    snap = snapshot(torch.full((4,), 0.5, dtype=torch.float64), probs, torch.zeros(4, dtype=torch.long),
                    torch.zeros(3, 3))
    total = 130 / 3 + 5 + 260 / 3 + 130
    assert selector.observe(snap).expected == pytest.approx(0.5 * total)  # 11 triggers left: soft p_n
    selector.done = 1
    assert selector.observe(snap).expected == pytest.approx(total)  # 10 left: p_n = b_n
    # the code's Eq. 10: NaN -> 1, divided by the triggers left after this one, everything at the last two
    assert selector._fix_count(10, float("nan")) == math.floor(10 * 1.0 / 9)
    selector.done = 9
    assert selector._fix_count(10, 0.1) == 10
    paper = EarlySelector(table, budget=1000, config=BIPEFTConfig(max_triggers=11, window=1))
    paper.done = 9
    assert paper._fix_count(10, 0.1) == 0  # floor(10 * 0.1 / 2)
    selector.counts[0] = 10.0  # as if module 0 were fixed at size 1: the code's |M_n| stays the largest size
    assert selector.sensitivity_counts[0] == 80 and selector.active_params() == 10 + 5 + 160 + 240


def test_a_float_zero_keep_skips_the_module_and_a_tensor_zero_keeps_its_gradient():
    model = tiny_model("tiny-bert")
    space = build_space("s2", describe(model))
    net = Supernet(model, space)
    lora = next(i for i, d in enumerate(space.dims()) if d.op == "lora")
    op, calls = net.modules[lora], []
    original = op.delta
    op.delta = lambda *a, **k: calls.append(1) or original(*a, **k)
    keep = [1.0] * len(net)
    keep[lora] = 0.0
    net.set_keep(keep)
    model(**tiny_inputs("tiny-bert")).logits.sum().backward()
    assert calls == [] and op.B.grad is None  # gated off by a float: no compute, no gradient
    gate = torch.ones(len(net))
    gate[lora] = 0.0
    gate.requires_grad_()
    net.set_keep(gate)
    with torch.no_grad():
        op.B.normal_()  # a non-zero delta, so its keep weight gets a non-zero gradient
    model(**tiny_inputs("tiny-bert")).logits.sum().backward()
    assert calls == [1] and gate.grad[lora] != 0  # gated off by a tensor: computed, straight-through


# ---- the sensitivity counts what trained in the step (issue 20, §2) ---------------------------------------------
@pytest.mark.parametrize("k", [0, 1, 2])
def test_a_sized_and_a_vector_module_with_equal_wg_get_equal_sensitivity_whatever_size_was_drawn(k):
    """Eq. 2 divides by the parameters that received a gradient: a LoRA drawn at size ``sizes[k]``
    trains its leading slice only; with ``|w G| = 0.25`` on every trained parameter of it and of a
    BitFit vector, both get ``f = 0.25``. The allocated form divides the LoRA by its largest size."""
    model = tiny_model("tiny-bert")
    space = build_space("s2", describe(model))
    net = Supernet(model, space)
    tape = GradientTape(net)
    lora = next(i for i, d in enumerate(space.dims()) if d.op == "lora")
    bias = next(i for i, d in enumerate(space.dims()) if d.op == "bitfit")
    size = space.sizes[k]
    with torch.no_grad():
        for op in net.modules:
            for p in op.parameters():
                p.uniform_(0.5, 1.5)
                p.grad = torch.zeros_like(p)
    a, b = net.modules[lora].A, net.modules[lora].B
    a.grad[:size] = 0.25 / a.detach()[:size]  # the drawn slice: A's first rows, B's first columns
    b.grad[:, :size] = 0.25 / b.detach()[:, :size]
    vector = net.modules[bias].bias
    vector.grad = -0.25 / vector.detach()
    drawn = torch.full((len(space),), k)
    selector = EarlySelector(ModuleTable.from_space(space), 1000, BIPEFTConfig())
    captured = tape.capture()
    scores = tape.scores(captured, captured, selector.step_counts(drawn))  # alpha = 1: s = 2 f
    assert scores[lora].item() == pytest.approx(0.5) and scores[bias].item() == pytest.approx(0.5)
    allocated = EarlySelector(ModuleTable.from_space(space), 1000, BIPEFTConfig(sensitivity="allocated"))
    old = tape.scores(captured, captured, allocated.step_counts(drawn))
    assert old[lora].item() == pytest.approx(0.5 * size / space.sizes[-1]) and old[bias].item() == pytest.approx(0.5)


def test_the_passes_of_a_step_train_the_size_the_step_drew():
    """ΔW's gradient (D_tra) and Θ's (D_val) cover the same slice of every sized module: the one
    the step drew, whose parameter count is the module's ``|M_n|`` for the step."""
    from methods.bipeft.gates import DisentangledWeights
    from methods.bipeft.sensitivity import segment_sum
    from methods.bipeft.session import SearchSession

    exp = experiment("tiny-bert")
    space = build_space("s2", exp.sites)
    run = SearchSession(capped_context(exp, space, 2500, max_steps=4), BIPEFTConfig(), DisentangledWeights)
    tape = GradientTape(run.net)
    selector = EarlySelector(ModuleTable.from_space(space), 2500, run.config)
    with torch.no_grad():  # non-zero LoRA B / adapter up weights: every entry of a slice can get a gradient
        for op in run.net.modules:
            for p in op.parameters():
                if not p.any():
                    p.normal_(0, 0.1)
    _, tra, val, drawn = BIPEFT._paper_step(run, tape, 0, 5.0)
    trained = segment_sum(((tra.g != 0) | (val.g != 0)).double(), tape.entry_module, len(space))
    counts = selector.step_counts(drawn)
    sized = [i for i, d in enumerate(space.dims()) if d.sizes]
    assert counts[sized].tolist() == [selector.table.q[i, drawn[i]].item() for i in sized]
    assert all(trained[i] <= counts[i] for i in range(len(space)))
    small = [i for i in sized if drawn[i] < len(space.sizes) - 1 and trained[i] > 0]
    assert small  # some modules drew a smaller size and trained it (the check above is not vacuous)


def test_sensitivity_option_is_checked():
    with pytest.raises(ValueError, match="unknown sensitivity 'mean'; valid: trained, allocated"):
        BIPEFT({"sensitivity": "mean"})
    with pytest.raises(ValueError, match="code_compat has the authors' form"):
        BIPEFT({"sensitivity": "allocated", "code_compat": True})
    assert BIPEFT().config.effective_sensitivity == "trained"


def test_the_trace_shows_the_search_converge(tmp_path):
    """Per step: the mean keep probability and entropy of Θ, the argmax probability and entropy of
    Φ; per trigger: the modules removed and the sizes fixed, by key."""
    arch, info, space, rows = run_search("tiny-bert", "s2", 1200, out_dir=tmp_path, max_triggers=3, window=2, tau=0.5)
    search_rows = [r for r in rows if r["phase"] == "search"]
    for r in search_rows:
        assert 0 < r["theta_keep"] < 1 and 0 <= r["theta_entropy"] <= math.log(2) + 1e-9
        assert math.isnan(r["phi_entropy"]) or 0 <= r["phi_entropy"] <= math.log(len(space.sizes)) + 1e-9
    keys = {d.key for d in space.dims()}
    fired = [r for r in search_rows if r["triggered"]]
    assert [r["step"] for r in fired][0] == info["first_trigger_step"] and fired[-1]["step"] == info["last_trigger_step"]
    removed = [k for r in fired for k in r["removed_keys"].split(";") if k]
    fixed = [kv.split("=") for r in fired for kv in r["fixed_sizes"].split(";") if kv]
    assert len(removed) == sum(r["removed"] for r in fired) and set(removed) <= keys
    assert len(fixed) == sum(r["fixed"] for r in fired) and all(k in keys and int(s) in space.sizes for k, s in fixed)
    assert all(r.get("removed_keys") is None for r in search_rows if not r["triggered"])
    with open(tmp_path / info["trace_csv"]) as f:
        assert {"theta_keep", "theta_entropy", "phi_top", "phi_entropy", "removed_keys", "fixed_sizes"} <= set(
            next(csv.DictReader(f)))


def test_an_architecture_step_reads_its_loss_once(monkeypatch):
    """The loss an architecture step returns is the value the non-finite guard read before the
    backward pass: no second host sync that waits for the update (two or three a BIPEFT step)."""
    from methods.bipeft.gates import DisentangledWeights
    from methods.bipeft.session import SearchSession

    exp = experiment("tiny-bert")
    space = build_space("s2", exp.sites)
    run = SearchSession(capped_context(exp, space, 2500, max_steps=4), BIPEFTConfig(), DisentangledWeights)
    run.arch.configure(run.net, keep="st", sizes="sample", temperature=5.0)
    batch, reads, item = run.next_arch_batch(), [], torch.Tensor.item

    def counted(tensor):  # a value of the autograd graph read on the host (not Adam's CPU step count)
        value = item(tensor)
        if tensor.grad_fn is not None:
            reads.append(value)
        return value

    monkeypatch.setattr(torch.Tensor, "item", counted)
    loss = run.arch_step(batch, [run.arch.theta])
    assert reads == [loss] and run.arch.theta.grad is not None  # one read, and the step did update
