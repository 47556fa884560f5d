"""APET: random placements that fill a fixed budget, deterministic per seed, and its Searcher."""

from __future__ import annotations

import numpy as np
import pytest

from methods import get_method
from methods.apet.draw import apet_draw, draw_rng
from methods.base import SearchProblem
from spaces import build_space
from spaces.architecture import Architecture
from suite.backbones import backbone_sites


@pytest.fixture(scope="module", params=["s1", "s2"])
def space(request):
    return build_space(request.param, backbone_sites("tiny-t5"), backbone_name="tiny-t5")


def leftover_fits(space, arch, budget) -> list[str]:
    """Modules absent from ``arch`` that would still fit at some size."""
    left = budget - space.param_count(arch)
    present = {(p.site, p.op) for p in arch.placements}
    return [d.key for i, d in enumerate(space.dims())
            if (d.site, d.op) not in present and min(space.choice_params(i)[1:]) <= left]


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.4])
def test_draws_fill_the_budget_without_overshoot(space, fraction):
    budget = max(1, int(fraction * space.full_size()))
    for seed in range(10):
        arch = apet_draw(space, budget, draw_rng(seed, budget, 0))
        space.validate(arch)
        assert 0 < space.param_count(arch) <= budget
        assert leftover_fits(space, arch, budget) == []  # nothing else fits


def test_draws_are_deterministic_per_seed(space):
    budget = space.full_size() // 5
    a = [apet_draw(space, budget, draw_rng(seed, budget, 0)) for seed in range(5)]
    b = [apet_draw(space, budget, draw_rng(seed, budget, 0)) for seed in range(5)]
    assert a == b
    assert len({arch.digest() for arch in a}) == 5  # different seeds, different architectures


def test_the_budget_split_of_the_authors_code():
    space = build_space("s2", backbone_sites("tiny-t5"))
    budget = space.full_size() // 10
    sized = {d.key for d in space.dims() if d.sizes}
    for seed in range(10):
        arch = apet_draw(space, budget, draw_rng(seed, budget, 0), delta_share=0.5, refill=False)
        delta = sum(space.param_count(Architecture("s2", "", (p,))) for p in arch.placements if p.key in sized)
        inner = space.param_count(arch) - delta
        assert delta <= budget // 2 and inner <= budget - budget // 2
        assert delta > 0 and inner > 0


def test_largest_sizes_rule():
    space = build_space("s1", backbone_sites("tiny-t5"))
    budget = space.full_size() // 3
    arch = apet_draw(space, budget, draw_rng(0, budget, 0), sizes="largest")
    assert arch.placements and {p.size for p in arch.placements} == {8}
    assert space.param_count(arch) <= budget


def test_a_budget_below_the_cheapest_placement_is_an_error():
    space = build_space("s1", backbone_sites("tiny-t5"))
    with pytest.raises(ValueError, match="no placement .* fits a budget of 3 parameters"):
        apet_draw(space, 3, draw_rng(0, 3, 0))


def test_searcher_draws_in_order_for_its_seed(space, tmp_path):
    budget = space.full_size() // 5
    method = get_method("apet")
    assert (method.kind, method.num_candidates(), method.max_concurrent()) == ("black-box", 1, 1)
    searcher = method.make_searcher(SearchProblem(space, budget, 7))
    first = [searcher.suggest(f"t{i}") for i in range(3)]
    assert [method.candidate(space, c) for c in first] == [searcher.draw(k) for k in range(3)]
    assert all(not any("/" in k for k in c) for c in first)
    path = tmp_path / "apet.pkl"
    searcher.save(str(path))  # saved draws belong to their seed (resuming: the catalogue)
    with pytest.raises(ValueError, match="seed"):
        method.make_searcher(SearchProblem(space, budget, 8)).restore(str(path))


def test_config_errors():
    with pytest.raises(ValueError, match="valid: any, largest"):
        get_method("apet", {"sizes": "smallest"})
    with pytest.raises(ValueError, match="delta_share"):
        get_method("apet", {"delta_share": 1.5})
    assert np.isclose(get_method("apet").config.delta_share, 0.5)
