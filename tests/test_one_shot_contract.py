"""The contract of every registered one-shot method (``methods.METHODS``), on tiny models.

A method joins these tests by being registered: a search on tiny BERT (S2) and tiny T5 (S1) returns
a valid architecture of the space it searches (``method.searched_space(space)``: the run's space, or
a part of it such as S3Delta-M's one size, or a method's own such as AdaLoRA's free LoRA ranks),
within ``0.8 * B <= params <= B``, whose analytic count equals the parameters that
``apply_architecture`` materialises; the same seed gives the same architecture on the CPU; the
config survives a JSON round trip and unknown keys are clear errors.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re

import pytest
from helpers import capped_context, tiny_model, toy_experiment

from methods import METHODS, get_method
from spaces import build_space
from spaces.inject import apply_architecture, trainable_parameters

ONE_SHOT = [name for name in METHODS.names() if METHODS.get(name).kind == "one-shot"]
CASES = [("tiny-bert", "s2", 3000), ("tiny-t5", "s1", 2000)]
MAX_STEPS = 6


@functools.cache
def experiment(backbone: str, seed: int):
    """One toy experiment per backbone and seed (loading the tokenizer is the slow part)."""
    return toy_experiment(backbone, seed=seed, epochs=2)


def search(name: str, backbone: str, space_name: str, budget: int, seed: int = 0):
    """The method's architecture, its space and the budget used (capped at the method's capacity:
    S3Delta-M, for one, can spend no more than its size-1 space)."""
    exp = experiment(backbone, seed)
    space = build_space(space_name, exp.sites, backbone_name=backbone)
    method = get_method(name)
    budget = min(budget, method.capacity(space))
    ctx = capped_context(exp, space, budget, max_steps=MAX_STEPS)
    return method.search(ctx).architecture, space, budget


def test_there_are_one_shot_methods():
    assert "bipeft" in ONE_SHOT


@pytest.mark.parametrize("backbone, space_name, budget", CASES)
@pytest.mark.parametrize("name", ONE_SHOT)
def test_search_returns_a_valid_architecture_within_the_budget(name, backbone, space_name, budget):
    arch, space, budget = search(name, backbone, space_name, budget)
    searched = get_method(name).searched_space(space)
    searched.validate(arch)
    assert arch.space == searched.name and not arch.full_finetune
    params = searched.param_count(arch)
    assert 0.8 * budget <= params <= budget, f"{name}: {params} parameters for a budget of {budget}"
    model = tiny_model(backbone)
    apply_architecture(model, arch)
    assert trainable_parameters(model) == params


@pytest.mark.parametrize("name", ONE_SHOT)
def test_a_budget_below_the_smallest_module_is_refused_before_anything_is_built(name):
    """``OneShotMethod.search`` checks the budget against the space the method searches (S3Delta-M:
    its size-1 space) and names the smallest module, before the method builds a model."""
    exp = experiment("tiny-bert", 0)
    space = build_space("s2", exp.sites, backbone_name="tiny-bert")
    method = get_method(name)
    searched = method.searched_space(space)
    module, params = searched.smallest_module()

    def no_model():
        raise AssertionError(f"{name} built a model for a budget it cannot spend")

    ctx = dataclasses.replace(capped_context(exp, space, params - 1, max_steps=MAX_STEPS), make_model=no_model)
    with pytest.raises(ValueError, match=rf"budget of {params - 1} parameters is below the smallest module of "
                                         rf"space '{searched.name}' \({re.escape(module.key)}.*: {params} parameters\)"):
        method.search(ctx)


@pytest.mark.parametrize("name", ONE_SHOT)
def test_same_seed_same_architecture(name):
    first, _, _ = search(name, "tiny-bert", "s2", 3000, seed=3)
    second, _, _ = search(name, "tiny-bert", "s2", 3000, seed=3)
    assert first.to_dict() == second.to_dict()


@pytest.mark.parametrize("name", ONE_SHOT)
def test_config_json_round_trip(name):
    method = get_method(name)
    data = json.loads(json.dumps(method.config_dict()))
    again = METHODS.get(name)(data)
    assert again.config == method.config
    assert again.config_dict() == method.config_dict()


@pytest.mark.parametrize("name", ONE_SHOT)
def test_unknown_config_key_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"unknown \w+ key 'no_such_option'.*valid keys|takes no options"):
        METHODS.get(name)({"no_such_option": 1})
