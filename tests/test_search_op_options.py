"""A search sees the ops it will be retrained with (issue 20, §1).

For every registered searching method, one-shot (its supernet) and black-box (its proxy trainings),
under both retrain recipes, the ops built inside the search stage's trial have the options of the ops
its retrain trial builds: both come from the job's trial spec (``Plan.trial_spec``, the recipe of
``suite.recipe``). The trials run as Ray runs them, minus Ray: the ops are read where they are built
(``Supernet``, the harness's ``inject_fixed``) and the trial is stopped there. The search info the
record keeps names the op settings the search used.
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model

from methods import METHODS
from spaces import build_space
from spaces.inject import Supernet, inject_fixed
from spaces.sites import describe
from suite import trials
from suite.harness import HarnessConfig
from suite.outcomes import SEARCH_KEY, SearchOutcome, unpacked
from suite.plan import Job, Plan
from suite.recipe import SUITE_OP_OPTIONS

SEARCHING = [name for name in METHODS.names() if METHODS.get(name).kind in ("one-shot", "black-box")]
HARNESS = {"max_train_samples": 32, "max_eval_samples": 16, "max_steps": 4, "eval_every": 2}
TASK, BACKBONE, BUDGET = "demo/rotten_tomatoes", "tiny-bert", 1500  # below S3Delta-M's whole space


class Built(Exception):
    """Raised where the ops are built: what the test needed has been read."""


def options_of(ops) -> dict[str, dict]:
    """Each op name's options, checking that every op of one name has the same."""
    seen: dict[str, dict] = {}
    for op in ops:
        assert seen.setdefault(op.name, op._init_kwargs()) == op._init_kwargs()
    return seen


def spec_for(name: str, recipe: str) -> dict:
    kind = METHODS.get(name).kind
    plan = Plan(methods=(name,), space="s2", tasks=(TASK,), backbone=BACKBONE, seeds=(0,), absolute_budget=BUDGET,
                backbone_params=1, harness=HarnessConfig(**HARNESS), retrain_recipe=recipe)
    return plan.trial_spec(Job(name, kind, TASK, 0, None, BUDGET, "s2"))


def retrain_options(spec: dict) -> dict[str, dict]:
    """The options of the ops a retrain trial of this job builds, for every op of the space (the
    retrain's spec carries the architecture; its op settings are the same spec field)."""
    model = tiny_model(BACKBONE)
    space = build_space("s2", describe(model))
    return options_of(inject_fixed(model, space.full(), op_options=spec["op_options"]))


@pytest.fixture
def no_ray(monkeypatch):
    """The trial functions without a Ray session: reports collected, placement skipped, threads restored."""
    reports: list[dict] = []
    monkeypatch.setattr("ray.tune.report", lambda metrics, **kw: reports.append(metrics))
    monkeypatch.setattr(trials, "placement", lambda started_at: {})
    threads = torch.get_num_threads()
    yield reports
    torch.set_num_threads(threads)


def searched_options(name: str, spec: dict, monkeypatch, tmp_path) -> dict[str, dict]:
    """The options of the ops the search stage's trial builds (the supernet, or a proxy's ops)."""
    built: list = []
    if METHODS.get(name).kind == "one-shot":
        init = Supernet.__init__

        def recorded(self, *args, **kwargs):  # wherever the method builds its supernet from
            init(self, *args, **kwargs)
            built.extend(self.modules)
            raise Built

        monkeypatch.setattr(Supernet, "__init__", recorded)
        try:
            trials.search_trial({"trial": spec}, str(tmp_path), cpus=1)
        except Built:
            pass
        else:
            pytest.skip(f"{name} builds no supernet (a test plugin that trains nothing)")
    else:
        def recorded(*args, **kwargs):
            built.extend(inject_fixed(*args, **kwargs))
            raise Built

        monkeypatch.setattr("suite.harness.inject_fixed", recorded)
        space = build_space("s2", describe(tiny_model(BACKBONE)))
        with pytest.raises(Built):  # every op of the space: the full architecture as a candidate
            trials.proxy_trial({"trial": spec, "candidate": space.to_tune_config(space.full())}, cpus=1)
    return options_of(built)


def test_there_are_searching_methods_of_both_kinds():
    assert {"bipeft", "s3delta", "prunepeft", "autopeft", "apet"} <= set(SEARCHING)


@pytest.mark.parametrize("recipe", ["suite", "authors"])
@pytest.mark.parametrize("name", SEARCHING)
def test_the_search_builds_the_ops_of_its_retrain(name, recipe, no_ray, monkeypatch, tmp_path):
    spec = spec_for(name, recipe)
    searched = searched_options(name, spec, monkeypatch, tmp_path)
    retrained = retrain_options(spec)
    assert searched and searched.items() <= retrained.items()
    if METHODS.get(name).kind == "one-shot":
        assert searched == retrained  # the supernet holds every op of the space


def test_the_recipes_differ_where_it_matters():
    """The test above is not vacuous: BIPEFT's authors' LoRA is unscaled, the suite's is scaled 16."""
    assert retrain_options(spec_for("bipeft", "suite"))["lora"] == {"scaling": 16.0}
    assert retrain_options(spec_for("bipeft", "authors"))["lora"] == {"scaling": 1.0}


def test_the_search_info_names_the_op_settings_it_used(no_ray, tmp_path):
    spec = spec_for("bipeft", "suite")
    spec["method_options"] = {"max_triggers": 2, "window": 1}
    trials.search_trial({"trial": spec}, str(tmp_path), cpus=1)
    info = unpacked(SearchOutcome, no_ray[-1][SEARCH_KEY]).info
    assert info["op_options"] == spec["op_options"] == SUITE_OP_OPTIONS
