"""AdaLoRA as a budgeted search (``methods.adalora``): peft's allocation, exported as LoRA ranks.

The one-shot catalogue (``test_one_shot_contract.py``) covers the budget window, determinism and the
config round trip; these tests cover what is AdaLoRA's own: the exported ranks are peft's final
``rank_pattern``, peft adapts exactly the suite's linear sites on every family, the safety net acts
only outside the window and says what it did, the schedule scales the authors' step counts.
"""

from __future__ import annotations

import dataclasses

import pytest
from helpers import capped_context, toy_experiment
from peft.tuners.adalora.model import AdaLoraModel

from methods import get_method
from methods.adalora.config import REFERENCE_STEPS, AdaLoRAConfig
from methods.adalora.fit import fit_ranks
from methods.adalora.method import ROOT
from spaces import build_space
from spaces.s2 import LINEARS


@pytest.fixture
def peft_models(monkeypatch):
    """Every peft ``AdaLoraModel`` a search steps, captured by a spy on ``update_and_allocate``."""
    seen: list[AdaLoraModel] = []
    original = AdaLoraModel.update_and_allocate

    def spy(self, global_step):
        original(self, global_step)
        if not seen or seen[-1] is not self:
            seen.append(self)

    monkeypatch.setattr(AdaLoraModel, "update_and_allocate", spy)
    return seen


def search(backbone: str, budget: int, seed: int = 0, max_steps: int | None = None, **options):
    exp = toy_experiment(backbone, seed=seed, epochs=2)
    space = build_space("s2", exp.sites, backbone_name=backbone)
    result = get_method("adalora", options).search(capped_context(exp, space, budget, max_steps=max_steps))
    return exp, result


def peft_ranks(adalora: AdaLoraModel, sites) -> dict[str, int]:
    """The final rank per site as peft's ``rank_pattern`` says (names mapped back through the sites)."""
    site_of = {ROOT + spec.module: str(spec.site) for spec in sites.sites("linear")}
    pattern = adalora.peft_config["default"].rank_pattern
    ranks = {site_of[name.removesuffix(".lora_E.default")]: sum(mask) for name, mask in pattern.items()}
    return {site: r for site, r in ranks.items() if r}


@pytest.mark.parametrize("backbone, budget", [("tiny-bert", 3000), ("tiny-t5", 2000)])
def test_the_exported_ranks_are_peft_s_final_rank_pattern(peft_models, backbone, budget):
    exp, result = search(backbone, budget, max_steps=6)
    assert result.info["budget_fit"]["modules_changed"] == {}, "the safety net acted: pick a case where it does not"
    exported = {str(p.site): p.size for p in result.architecture.placements}
    assert {p.op for p in result.architecture.placements} == {"lora"}
    assert exported == peft_ranks(peft_models[-1], exp.sites) == result.info["adalora_ranks"]
    assert result.architecture.space == "adalora" and result.info["ranks_bounded_by_run_space"] is False


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-t5", "tiny-t5-gated", "tiny-llama"])
def test_peft_adapts_exactly_the_suite_linear_sites(peft_models, backbone):
    exp, _ = search(backbone, 2000, max_steps=3)
    adapted = {name for name, module in peft_models[-1].model.named_modules() if hasattr(module, "lora_E")}
    assert adapted == {ROOT + spec.module for spec in exp.sites.sites("linear", LINEARS)}


def test_the_own_score_is_one_validation_by_the_context(monkeypatch):
    exp = toy_experiment("tiny-bert", seed=0, epochs=2)
    space = build_space("s2", exp.sites, backbone_name="tiny-bert")
    ctx = capped_context(exp, space, 3000, max_steps=4)
    calls = []

    def evaluate(task_model):
        calls.append(task_model)
        return {"accuracy": 12.5}

    info = get_method("adalora").search(dataclasses.replace(ctx, evaluate=evaluate)).info
    assert len(calls) == 1 and info["own_validation"] == {"accuracy": 12.5}


def test_the_safety_net_fills_a_short_allocation_and_says_so():
    budget = 3000
    exp, result = search("tiny-bert", budget, max_steps=6, budget_fill=0.5)
    fit = result.info["budget_fit"]
    assert fit["params_before"] < 0.8 * budget <= fit["params_after"] <= budget
    assert fit["added"] > 0 and fit["dropped"] == 0 and fit["modules_changed"]
    exported = {str(p.site): p.size for p in result.architecture.placements}
    for site, (before, after) in fit["modules_changed"].items():
        assert result.info["adalora_ranks"].get(site, 0) == before and exported.get(site, 0) == after


def test_fit_ranks_leaves_an_allocation_in_the_window_alone():
    fit = fit_ranks([[True, False], [True, True]], [[3, 1], [2, 4]], [10, 20], budget=50, floor=40)
    assert fit.ranks == [1, 2] and fit.params_after == fit.params_before == 50 and not fit.changed


def test_fit_ranks_trims_the_least_important_kept_triplets():
    fit = fit_ranks([[True, True], [True, True]], [[3, 1], [2, 4]], [10, 20], budget=45, floor=30)
    # 60 > 45: drop score 1 (cost 10) -> 50, then score 2 (cost 20) -> 30, within [30, 45]
    assert fit.ranks == [1, 1] and fit.params_after == 30 and fit.dropped == 2 and fit.changed == {0: (2, 1), 1: (2, 1)}


def test_fit_ranks_fills_with_the_most_important_triplets_that_fit():
    fit = fit_ranks([[True, False, False], [False, False]], [[5, 1, 2], [9, 8]], [10, 40], budget=45, floor=36)
    # 10 < 36: score 9 costs 40 -> 50 > 45, skipped; score 8 too; score 2 (cost 10) -> 20; score 1 -> 30
    # still < 36 and nothing else fits: the fit stops short rather than exceed B
    assert fit.ranks == [3, 0] and fit.params_after == 30 and fit.added == 2


def test_the_schedule_scales_the_authors_step_counts():
    config = AdaLoRAConfig()
    full = config.schedule(REFERENCE_STEPS)
    assert (full.tinit, full.tfinal, full.deltaT) == (8000, 50000, 100)
    tenth = config.schedule(REFERENCE_STEPS // 10)
    assert (tenth.tinit, tenth.tfinal, tenth.deltaT) == (800, 5000, 10)
    short = config.schedule(3)  # clamped: one scored step before the final allocation, at step 2
    assert short.tinit < short.final_step and short.final_step >= 2 and short.deltaT == 1
    with pytest.raises(ValueError, match="at least 2 planned steps"):
        config.schedule(1)


def test_an_init_rank_too_small_for_the_budget_is_refused_before_training():
    exp = toy_experiment("tiny-bert", seed=0, epochs=2)
    space = build_space("s2", exp.sites, backbone_name="tiny-bert")

    def no_model():
        raise AssertionError("built a model for a budget init_r cannot hold")

    ctx = dataclasses.replace(capped_context(exp, space, 3000, max_steps=4), make_model=no_model)
    with pytest.raises(ValueError, match=r"init_r=1 cannot hold the rank budget: 12 modules x init_r must exceed"):
        get_method("adalora", {"init_r": 1}).search(ctx)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"target_modules must be distinct positions among attn.q"):
        AdaLoRAConfig(target_modules=("attn.qq",))
    with pytest.raises(ValueError, match=r"beta1 must be in \(0, 1\)"):
        AdaLoRAConfig(beta1=1.0)


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_searches_retrains_and_records_adalora(tmp_path, ray_session):
    from suite.backbones import backbone_sites
    from suite.cli import main
    from suite.records import validate_dir
    from suite.rundir import load_records

    out = tmp_path / "run"
    budget = int(0.05 * build_space("s2", backbone_sites("tiny-bert")).full_size())
    assert main(["run", "--methods", "adalora", "--space", "s2", "--backbone", "tiny-bert", "--tasks",
                 "demo/rotten_tomatoes", "--max-train-samples", "48", "--max-eval-samples", "24", "--epochs", "1",
                 "--seeds", "0", "--budget-params", str(budget), "--out", str(out)]) == 0
    (record,) = load_records(out)
    assert record["status"] == "ok", record["error"]
    assert record["architecture"]["space"] == "adalora" and 0.8 * budget <= record["params"]["peft"] <= budget
    assert record["search"]["ranks_bounded_by_run_space"] is False and "own_validation" in record["search"]
    assert validate_dir(out) == []
