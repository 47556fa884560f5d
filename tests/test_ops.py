"""Every op on every family: counting, init, freezing, and search mode == fixed mode."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_BACKBONES_FOR_OPS, output_tensor, tiny_inputs, tiny_model

from spaces.architecture import Architecture, Placement
from spaces.inject import Supernet, inject_fixed, trainable_parameters
from spaces.ops import OPS
from spaces.sites import describe
from spaces.space import SearchSpace, count_params

# Ops that are exactly the identity at init (the adapters are too with init="zero_up").
EXACT_ZERO_INIT = {"lora", "adapter_lr", "bitfit", "lnfit", "prefix"}


def specs_for(sites, op: str):
    cls = OPS[op]
    specs = [s for s in sites.specs if s.kind in cls.site_kinds]
    if op == "prefix":
        specs = [s for s in specs if s.attention is not None]
    return specs


def arch_with(sites, op: str, size=4) -> Architecture:
    size = size if OPS[op].sized else None
    placements = [Placement(s.site, op, size) for s in specs_for(sites, op)]
    assert placements, f"no site for {op}"
    return Architecture("test", "tiny", tuple(placements))


@pytest.mark.parametrize("family", TINY_BACKBONES_FOR_OPS)
@pytest.mark.parametrize("op", sorted(OPS))
def test_fixed_op_counts_init_and_freezing(family, op):
    model = tiny_model(family)
    inputs = tiny_inputs(family)
    with torch.no_grad():
        before = output_tensor(model, inputs)
    sites = describe(model)
    options = {op: {"init": "zero_up"}} if op.startswith("adapter_") and op != "adapter_lr" else None
    arch = arch_with(sites, op)
    ops = inject_fixed(model, arch, op_options=options)

    # analytic count == materialised trainable count, and nothing else trains
    assert count_params(sites, arch) == trainable_parameters(model)
    op_params = {id(p) for o in ops for p in o.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) in op_params), name

    # zero-init ops (and zero_up adapters) leave the output unchanged at init
    with torch.no_grad():
        after = output_tensor(model, inputs)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)

    # gradients reach the ops and never the backbone
    output_tensor(model, inputs).pow(2).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for o in ops for p in o.parameters())
    for name, p in model.named_parameters():
        if id(p) not in op_params:
            assert p.grad is None, name


@pytest.mark.parametrize("family", TINY_BACKBONES_FOR_OPS)
@pytest.mark.parametrize("op", ["adapter_serial", "adapter_parallel"])
def test_houlsby_adapters_are_near_identity(family, op):
    model = tiny_model(family)
    inputs = tiny_inputs(family)
    with torch.no_grad():
        before = output_tensor(model, inputs)
        inject_fixed(model, arch_with(describe(model), op))
        after = output_tensor(model, inputs)
    assert not torch.equal(before, after)  # N(0, 0.01) weights: not exactly zero ...
    torch.testing.assert_close(after, before, rtol=0, atol=0.05)  # ... but close


class _OneModuleSpace(SearchSpace):
    """A space of one op at one site, for comparing search mode with fixed mode."""

    name = "one"
    description = "test"

    def __init__(self, sites, spec, op, sizes):
        self._spec, self._op = spec, op
        super().__init__(sites, sizes)

    def candidates(self):
        return [(self._spec, self._op)]


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


SIZED = sorted(name for name, cls in OPS.items() if cls.sized)


@pytest.mark.parametrize("family", TINY_BACKBONES_FOR_OPS)
@pytest.mark.parametrize("op", SIZED)
@pytest.mark.parametrize("k", [1, 4, 8])
def test_search_one_hot_equals_fixed_slice(family, op, k):
    sizes = (1, 4, 8)
    inputs = tiny_inputs(family)
    search_model, fixed_model = tiny_model(family).double(), tiny_model(family).double()
    sites = describe(search_model)
    spec = specs_for(sites, op)[-1]
    space = _OneModuleSpace(sites, spec, op, sizes)
    net = Supernet(search_model, space)
    (search_op,) = net.modules
    _randomise(search_op, seed=1)

    probs = torch.nn.functional.one_hot(torch.tensor(sizes.index(k)), len(sizes)).double().requires_grad_()
    net.set_size_probs(probs[None])
    arch = net.export([True], [k])
    (fixed_op,) = inject_fixed(fixed_model, arch)
    fixed_op.load_state_dict(search_op.sliced(k).state_dict())

    out_s, out_f = output_tensor(search_model, inputs), output_tensor(fixed_model, inputs)
    torch.testing.assert_close(out_s, out_f, rtol=1e-10, atol=1e-12)
    out_s.pow(2).sum().backward()
    out_f.pow(2).sum().backward()
    # Slice the search op's gradients the way its weights are sliced: load them as weights, slice.
    with torch.no_grad():
        for p in search_op.parameters():
            p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
    sliced_grads = dict(search_op.sliced(k).named_parameters())
    for name, p_f in fixed_op.named_parameters():
        torch.testing.assert_close(sliced_grads[name].data, p_f.grad, rtol=1e-9, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
    assert probs.grad is not None  # the size distribution gets a gradient (straight-through)


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-t5"])
@pytest.mark.parametrize("op", ["lora", "adapter_serial", "adapter_parallel", "prefix"])
def test_soft_mixture_is_one_product_equal_to_the_weighted_sum(family, op):
    """For channel-separable ops the per-channel weighting equals sum_k g_k * f_k exactly."""
    sizes = (1, 4, 8)
    model = tiny_model(family)
    sites = describe(model)
    spec = specs_for(sites, op)[0]
    search_op = OPS[op](spec, 8, candidates=sizes)
    _randomise(search_op, seed=2)
    host = model.get_submodule(spec.attention if op == "prefix" else spec.module)
    x = torch.randn(2, 5, spec.d_in)
    g = torch.tensor([0.2, 0.3, 0.5])
    search_op.set_size_probs(g)
    mixed = search_op.delta(x, host)
    search_op.set_size_probs(None)
    expected = sum(gk * search_op.sliced(k).delta(x, host) for gk, k in zip(g, sizes))
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-6)


def test_low_rank_adapter_every_weight_learns():
    """The authors' zero init left every weight gradient at 0 (methods.md §1.12 item 5); ours does not."""
    model = tiny_model("tiny-bert")
    sites = describe(model)
    (op,) = inject_fixed(model, Architecture("t", "t", (Placement(sites.specs[7].site, "adapter_lr", 4),)))
    opt = torch.optim.SGD(op.parameters(), lr=0.5)
    inputs = tiny_inputs("tiny-bert")
    for _ in range(2):  # after one step the up projection is non-zero, so everything gets gradient
        opt.zero_grad()
        output_tensor(model, inputs).pow(2).sum().backward()
        opt.step()
    for name, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_removed_module_costs_nothing():
    """A removed module is skipped: its delta is never computed and it gets no gradient."""
    model = tiny_model("tiny-bert")
    sites = describe(model)
    spec = specs_for(sites, "lora")[0]
    space = _OneModuleSpace(sites, spec, "lora", (1, 4, 8))
    net = Supernet(model, space)
    calls = []
    (op,) = net.modules
    original = op.delta
    op.delta = lambda *a, **k: calls.append(1) or original(*a, **k)
    output_tensor(model, tiny_inputs("tiny-bert")).sum().backward()
    assert len(calls) == 1
    net.remove(0)
    output_tensor(model, tiny_inputs("tiny-bert")).sum()
    assert len(calls) == 1 and all(p.grad is None and not p.requires_grad for p in op.parameters())
    assert net.weights() == []


def test_bad_sizes_and_sites_are_clear_errors():
    sites = describe(tiny_model("tiny-bert"))
    norm = sites.sites("norm")[0]
    with pytest.raises(ValueError, match="cannot go on the norm site"):
        OPS["lora"](norm, 4)
    with pytest.raises(ValueError, match="positive integer size"):
        OPS["lora"](sites.sites("linear")[0], 0)
    with pytest.raises(ValueError, match="has no size"):
        OPS["bitfit"](norm, 4)
    op = OPS["lora"](sites.sites("linear")[0], 8, candidates=(1, 4, 8))
    with pytest.raises(ValueError, match="not among the candidates"):
        op.fix_size(3)
