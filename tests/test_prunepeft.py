"""PrunePEFT: groups and their Taylor scores, the budgeted size choice, pruning rounds, the search."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import torch
from helpers import capped_context, tiny_model, toy_experiment

from methods import METHODS, get_method
from methods.prunepeft import PrunePEFT, PrunePEFTConfig
from methods.prunepeft.groups import CHANNEL_DIMS, ModuleGroups, channel_dims, module_groups, select_sizes
from methods.prunepeft.method import budget_schedule
from methods.prunepeft.taylor import TaylorImportance
from spaces import build_space
from spaces.architecture import Architecture, Site
from spaces.inject import Supernet
from spaces.ops import OPS
from spaces.ops.lora import LoRA
from spaces.sites import SiteSpec, describe

# ---- groups --------------------------------------------------------------------------------------


@pytest.mark.parametrize("op_name", sorted(OPS))
def test_channel_layout_matches_every_ops_count(op_name):
    sites = describe(tiny_model("tiny-t5"))
    cls = OPS[op_name]
    spec = next(s for s in sites.specs if s.kind in cls.site_kinds and (op_name != "prefix" or s.attention))
    op = cls(spec, 8 if cls.sized else None, candidates=(1, 4, 8) if cls.sized else None)
    dims = channel_dims(op)
    assert set(dims) == {name for name, _ in op.named_parameters()}
    base = sum(p.numel() for n, p in op.named_parameters() if dims[n] is None)
    channel = sum(p.numel() // p.shape[dims[n]] for n, p in op.named_parameters() if dims[n] is not None)
    if cls.sized:
        assert op_name in CHANNEL_DIMS
        for k in range(1, 9):
            assert base + k * channel == cls.count(spec, k), k
    else:
        assert (base, channel) == (cls.count(spec, None), 0)


def _hand_lora():
    spec = SiteSpec(Site("enc", 0, "attn.q"), "linear", "q", d_in=2, d_out=3)
    op = LoRA(spec, 2, candidates=(1, 2))
    with torch.no_grad():
        op.A.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        op.B.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]]))
    grads = {"A": torch.tensor([[0.5, 0.5], [-1.0, 2.0]]), "B": torch.tensor([[2.0, 1.0], [1.0, -1.0], [0.0, 3.0]])}
    return op, grads


def test_taylor_score_of_a_hand_computed_lora():
    op, grads = _hand_lora()
    importance = TaylorImportance(list(op.parameters()))
    for _ in range(2):
        op.A.grad, op.B.grad = grads["A"].clone(), grads["B"].clone()
        importance.update()
    # |A*gA| = [[0.5, 1], [3, 1]] -> rows 1.5, 4 ; |B*gB| = [[2, 0], [0, 2], [0, 3]] -> columns 2, 5
    torch.testing.assert_close(importance.of(op.A), 2 * torch.tensor([[0.5, 1.0], [3.0, 1.0]]))
    groups = module_groups(op, {"A": importance.of(op.A), "B": importance.of(op.B)}, (1, 2))
    assert groups.channel_scores.tolist() == [18.0, 7.0]  # rank-1 components 1 (2*(4+5)) and 0 (2*(1.5+2))
    assert groups.order.tolist() == [1, 0]
    assert (groups.channel_cost, groups.base_cost, groups.base_score) == (5, 0, 0.0)
    assert groups.cost(2) == LoRA.count(op.spec, 2) == 10


def test_signed_taylor_scores_cancel_across_steps():
    op, grads = _hand_lora()
    importance = TaylorImportance(list(op.parameters()), accumulate="signed")
    for sign in (1.0, -1.0):
        op.A.grad, op.B.grad = sign * grads["A"], sign * grads["B"]
        importance.update()
    assert importance.of(op.A).abs().sum() == 0 and importance.of(op.B).abs().sum() == 0
    with pytest.raises(ValueError, match="unknown accumulate 'sum'; valid: abs, signed"):
        TaylorImportance([op.A], accumulate="sum")


def test_module_groups_of_a_size_less_op_and_base_parameters():
    sites = describe(tiny_model("tiny-t5"))
    spec = next(s for s in sites.specs if s.kind == "sublayer")
    adapter = OPS["adapter_serial"](spec, 8, candidates=(1, 4, 8))
    scores = {n: torch.ones_like(p) for n, p in adapter.named_parameters()}
    g = module_groups(adapter, scores, (1, 4, 8), live=4)
    # a channel: a row of down (d_in) + its bias entry + a column of up (d); base: the up bias (d)
    d, channel = spec.d_out, spec.d_in + 1 + spec.d_out
    assert g.channel_scores.tolist() == [channel] * 4 and g.base_score == d
    assert g.score(0, 1) == channel + d and g.score(1, 4) == 3 * channel
    bias = OPS["bitfit"](next(s for s in sites.specs if s.kind == "norm"))
    g = module_groups(bias, {"bias": torch.full((d,), 0.5)}, ())
    assert g.sizes == (1,) and g.channel_scores.tolist() == [0.5 * d] and g.cost(1) == d


# ---- the budgeted choice of sizes ----------------------------------------------------------------


def _brute_force(modules, budget, floor):
    best, best_in = -1.0, -1.0
    options = [[0] + [k for k in m.sizes if k <= len(m.channel_scores)] for m in modules]
    for combo in itertools.product(*options):
        cost = sum(m.cost(k) for m, k in zip(modules, combo))
        if cost > budget:
            continue
        score = sum(m.score(0, k) for m, k in zip(modules, combo))
        best = max(best, score)
        if cost >= floor:
            best_in = max(best_in, score)
    return best_in if best_in >= 0 else best


def _random_modules(rng, n):
    out = []
    for _ in range(n):
        if rng.random() < 0.4:
            out.append(ModuleGroups(np.array([rng.random() * 10]), int(rng.integers(10, 40)), 0.0, 0, (1,), np.zeros(1)))
        else:
            live = int(rng.choice([1, 4, 8]))
            scores = np.sort(rng.random(live) * 5)[::-1]
            out.append(ModuleGroups(scores, int(rng.integers(10, 40)), float(rng.random()), int(rng.integers(0, 30)),
                                    (1, 4, 8), np.arange(live)))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_select_sizes_is_the_best_choice_within_the_bounds(seed):
    rng = np.random.default_rng(seed)
    modules = _random_modules(rng, 5)
    full = sum(m.cost(max(k for k in m.sizes if k <= len(m.channel_scores))) for m in modules)
    budget = float(rng.integers(20, full))
    sizes = select_sizes(modules, budget, floor=0.8 * budget)
    cost = sum(m.cost(k) for m, k in zip(modules, sizes))
    assert cost <= budget
    assert all(k == 0 or (k in m.sizes and k <= len(m.channel_scores)) for m, k in zip(modules, sizes))
    score = sum(m.score(0, k) for m, k in zip(modules, sizes))
    assert score == pytest.approx(_brute_force(modules, budget, 0.8 * budget))


def test_select_sizes_hand_example_and_lower_bounds():
    lora = ModuleGroups(np.array([9.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]), 10, 0.0, 0, (1, 4, 8), np.arange(8))
    bias = ModuleGroups(np.array([3.0]), 8, 0.0, 0, (1,), np.zeros(1))
    # 40 params: rank 4 (40, score 12) beats rank 1 + bias (18, score 12 -> tie, but below 0.8 * 40)
    assert select_sizes([lora, bias], 40, floor=32) == [4, 0]
    assert select_sizes([lora, bias], 40) in ([1, 1], [4, 0])
    assert select_sizes([lora, bias], 18) == [1, 1]
    assert select_sizes([lora, bias], 89) == [8, 1]
    assert select_sizes([lora, bias], 50, at_least=[0, 1]) == [4, 1]
    with pytest.raises(ValueError, match="no size >= 8"):
        select_sizes([lora, bias], 50, at_least=[8, 0])


def test_geometric_budget_schedule():
    rounds = budget_schedule(100, 8000, 1000, 3)
    assert [s for s, _ in rounds] == [33, 67, 100]
    assert [b for _, b in rounds] == pytest.approx([4000, 2000, 1000])
    assert budget_schedule(2, 8000, 1000, 3)[0][0] == 1


# ---- pruning the supernet between rounds ---------------------------------------------------------


def test_prune_keeps_the_best_channels_first_and_removes_the_rest():
    model = tiny_model("tiny-bert")
    space = build_space("s2", describe(model))
    net = Supernet(model, space)
    importance = TaylorImportance(net.weights())
    optimizer = torch.optim.AdamW(net.weights())
    i = next(j for j, d in enumerate(net.dims) if d.op == "lora")
    op = net.modules[i]
    with torch.no_grad():
        op.B.normal_()
        importance.accumulator(op.A)[:] = torch.tensor([5.0, 6, 7, 0, 1, 2, 3, 4])[:, None]  # best: 2, 1, 0, 7
    optimizer.state[op.A]["exp_avg"] = torch.arange(8.0)[:, None].expand_as(op.A).clone()
    groups = PrunePEFT._groups(net, importance)
    assert groups[i].order[:4].tolist() == [2, 1, 0, 7]
    a_before, b_before = op.A.detach().clone(), op.B.detach().clone()
    sizes = [0] * len(net)
    sizes[i] = 4
    PrunePEFT._prune(net, groups, sizes, optimizer, importance)
    keep = [2, 1, 0, 7]
    torch.testing.assert_close(op.A[:4], a_before[keep])
    torch.testing.assert_close(op.B[:, :4], b_before[:, keep])
    assert optimizer.state[op.A]["exp_avg"][:4, 0].tolist() == [2.0, 1.0, 0.0, 7.0]
    assert importance.accumulator(op.A)[:4, 0].tolist() == [7.0, 6.0, 5.0, 4.0]
    assert op.active_size == 4 and op.size_fixed
    assert all(m.removed for j, m in enumerate(net.modules) if j != i)
    # the next round sees only the 4 live channels
    assert len(PrunePEFT._groups(net, importance)[i].channel_scores) == 4


# ---- the search end to end -----------------------------------------------------------------------


def _search(backbone, space_name, budget, max_steps=4, **config):
    exp = toy_experiment(backbone)
    space = build_space(space_name, exp.sites, backbone_name=backbone)
    seen = []
    ctx = capped_context(exp, space, budget, max_steps=max_steps, report=seen.append)
    return space, get_method("prunepeft", config).search(ctx).architecture, seen


@pytest.mark.parametrize("schedule", ["one_shot", "iterative"])
@pytest.mark.parametrize("backbone,space_name,budget", [("tiny-bert", "s2", 1000), ("tiny-bert", "s2", 3000),
                                                         ("tiny-t5", "s1", 900), ("tiny-t5", "s1", 3000)])
def test_search_returns_candidate_sizes_within_budget(backbone, space_name, budget, schedule):
    space, arch, seen = _search(backbone, space_name, budget, schedule=schedule)
    space.validate(arch)
    assert 0.8 * budget <= space.param_count(arch) <= budget
    assert {p.size for p in arch.placements if p.size is not None} <= {1, 4, 8}
    assert Architecture.from_json(arch.to_json()) == arch
    assert len(seen) == (3 if schedule == "iterative" else 1)
    assert seen[-1]["kept_params"] == space.param_count(arch)
    assert [r["round_budget"] for r in seen] == sorted((r["round_budget"] for r in seen), reverse=True)


class Recorded:
    """A loader that keeps the ``index`` of every example it hands out."""

    def __init__(self, loader):
        self.loader, self.seen = loader, []

    def __iter__(self):
        for batch in self.loader:
            self.seen += batch["index"].tolist()
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


def test_by_default_the_supernet_trains_on_the_whole_train_split():
    """As published: not bi-level, so the whole train split for the retrain's steps, never a search half."""
    import dataclasses

    exp = toy_experiment("tiny-bert", batch_size=16)
    space = build_space("s2", exp.sites)
    ctx = exp.search_context(space, 1500)
    loaders = {name: Recorded(getattr(ctx, name)) for name in ("train", "weight_train", "arch_train", "validation")}
    rows = []
    PrunePEFT().search(dataclasses.replace(ctx, report=rows.append, **loaders))
    assert sorted(loaders["train"].seen) == list(range(len(exp.splits.train)))  # one epoch: every example once
    assert rows[-1]["scored_steps"] == ctx.train_steps == len(ctx.train) * exp.epochs
    assert not loaders["weight_train"].seen and not loaders["arch_train"].seen


def test_search_is_deterministic_per_seed():
    a = _search("tiny-t5", "s1", 2000, schedule="iterative")[1]
    b = _search("tiny-t5", "s1", 2000, schedule="iterative")[1]
    assert a.to_dict() == b.to_dict()


def test_search_scores_every_training_step():
    _, _, seen = _search("tiny-bert", "s2", 1500, max_steps=4, schedule="iterative", rounds=2)
    assert [(r["step"], r["scored_steps"]) for r in seen] == [(2, 2), (4, 4)]  # Taylor update at each step


def test_budget_edge_cases():
    exp = toy_experiment("tiny-t5")
    space = build_space("s1", exp.sites, backbone_name="tiny-t5")
    with pytest.warns(UserWarning, match="less than 0.8 x the budget"):
        arch = PrunePEFT().search(capped_context(exp, space, 10 * space.full_size(), max_steps=2)).architecture
    assert arch == space.full()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PrunePEFT().search(capped_context(exp, space, space.full_size(), max_steps=2)).architecture == space.full()
    with pytest.raises(ValueError, match="below the smallest module"):
        PrunePEFT().search(capped_context(exp, space, 10, max_steps=2))
    with pytest.raises(ValueError, match="budget must be > 0"):
        PrunePEFT().search(capped_context(exp, space, 0, max_steps=2))


# ---- config --------------------------------------------------------------------------------------


def test_registered_and_config_round_trip():
    assert "prunepeft" in METHODS and METHODS.get("prunepeft") is PrunePEFT
    method = get_method("prunepeft", {"schedule": "iterative", "rounds": 5, "accumulate": "signed"})
    assert PrunePEFT(json.loads(json.dumps(method.config_dict()))).config == method.config
    with pytest.raises(ValueError, match="unknown PrunePEFTConfig key 'round'.*did you mean 'rounds'"):
        PrunePEFT({"round": 2})


@pytest.mark.parametrize("bad,match", [
    ({"schedule": "cubic"}, "unknown schedule 'cubic'; valid: one_shot, iterative"),
    ({"rounds": 0}, "rounds must be an int >= 1"),
    ({"rounds": 2.5}, "rounds must be an int >= 1"),
    ({"accumulate": "ema"}, "unknown accumulate 'ema'; valid: abs, signed"),
    ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
])
def test_bad_config_values_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        PrunePEFTConfig(**bad)
