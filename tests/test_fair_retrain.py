"""One retrain recipe for every architecture: the method that found it changes nothing.

Two jobs of different methods (a search and a manual baseline, here) whose architectures have the
same placements are retrained from their trial specs exactly as a Ray trial does: the records'
metrics and the trained weights are identical, bit for bit on the CPU. Under ``--retrain-recipe
authors`` the method's own settings apply instead, and the tables label those rows.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from methods import get_method
from spaces.architecture import Architecture
from suite.harness import HarnessConfig
from suite.plan import Job, Plan
from suite.recipe import SUITE_OP_OPTIONS, op_options
from suite.trials import _experiment

HARNESS = {"max_train_samples": 32, "max_eval_samples": 16, "max_steps": 4, "eval_every": 2}


def plan(recipe: str = "suite") -> Plan:
    return Plan(methods=("s3delta", "lora"), space="s2", tasks=("demo/rotten_tomatoes",), backbone="tiny-bert",
                seeds=(0,), absolute_budget=3000, backbone_params=1, harness=HarnessConfig(**HARNESS),
                retrain_recipe=recipe)


def retrain(spec: dict):
    """The retrain trial's work, without Ray: the experiment and the retrain its spec makes."""
    return _experiment(spec).retrain(Architecture.from_dict(spec["architecture"]), op_options=spec["op_options"])


def test_the_same_placements_retrain_identically_whatever_the_method():
    from suite.backbones import backbone_sites

    lora = get_method("lora").architecture(backbone_sites("tiny-bert"), "tiny-bert")
    as_searched = dataclasses.replace(lora, space="s2", backbone="somewhere-else")  # same placements
    p = plan()
    searched = p.trial_spec(Job("s3delta", "one-shot", "demo/rotten_tomatoes", 0, None, 3000, "s2"),
                            as_searched.to_dict())
    manual = p.trial_spec(Job("lora", "manual", "demo/rotten_tomatoes", 0, None, None, "manual"), lora.to_dict())
    assert searched["op_options"] == manual["op_options"] == SUITE_OP_OPTIONS
    a, b = retrain(searched), retrain(manual)
    timing = ("train_time_s", "eval_time_s", "peak_memory_mb")
    assert {k: v for k, v in a.to_dict().items() if k not in timing} == \
           {k: v for k, v in b.to_dict().items() if k not in timing}
    assert a.predictions == b.predictions
    assert a.weights.keys() == b.weights.keys() and len(a.weights) > 0
    assert all(torch.equal(a.weights[name], b.weights[name]) for name in a.weights)  # bit for bit


def test_the_authors_recipe_is_each_methods_own():
    assert op_options("authors", get_method("s3delta")) == {"lora": {"scaling": 16.0}}
    assert op_options("authors", get_method("lora")) == {"lora": {"scaling": 2.0}}
    assert op_options("authors", get_method("bipeft")) == {}  # the ops' defaults: BIPEFT's code
    assert op_options("suite", get_method("s3delta")) == op_options("suite", get_method("bipeft"))
    with pytest.raises(ValueError, match="valid: suite, authors"):
        op_options("mine", get_method("lora"))


def test_the_suite_recipe_is_the_one_the_readme_states():
    """README "A fair fight": LoRA scale 16, Houlsby adapters with gelu_new, a zero-value prefix, lr 3e-4;
    every op of a retrain trial is built with them, whichever method found it."""
    from helpers import tiny_model

    from spaces.architecture import Placement, Site
    from spaces.inject import inject_fixed
    from suite.harness import HarnessConfig

    adapter = {"init": "houlsby", "activation": "gelu_new", "scaling": 1.0}
    readme = {"lora": {"scaling": 16.0}, "dora": {"scaling": 16.0}, "prefix": {"form": "zero_value"}, "adapter_serial": adapter,
              "adapter_parallel": adapter}
    placements = (Placement(Site("enc", 0, "attn.q"), "lora", 4), Placement(Site("enc", 0, "attn"), "prefix", 4),
                  Placement(Site("enc", 0, "ffn"), "adapter_serial", 4),
                  Placement(Site("enc", 1, "ffn"), "adapter_parallel", 4))
    arch = Architecture("s2", "tiny-bert", placements)
    spec = plan().trial_spec(Job("s3delta", "one-shot", "demo/rotten_tomatoes", 0, None, 3000, "s2"), arch.to_dict())
    assert spec["op_options"] == readme
    assert HarnessConfig().lr == 3e-4 and "lr" not in spec["harness"]
    built = inject_fixed(tiny_model("tiny-bert"), arch, op_options=spec["op_options"])
    ops = {p.op: op for p, op in zip(arch.placements, built)}
    assert ops["lora"].scaling == 16.0 and ops["prefix"].form == "zero_value"
    for name in ("adapter_serial", "adapter_parallel"):
        assert (ops[name].init, ops[name].activation, ops[name].scaling) == ("houlsby", "gelu_new", 1.0)


# ---- the learning-rate protocol -------------------------------------------------------------------
def lr_plan(backbone: str, *options: str) -> Plan:
    from suite.cli import build_parser
    from suite.inputs import make_plan

    return make_plan(build_parser().parse_args(
        ["run", "--methods", "lora,full", "--backbone", backbone, "--tasks", "demo/rotten_tomatoes",
         "--max-train-samples", "32", "--max-eval-samples", "16", "--max-steps", "2", *options]))


def retrain_specs(p: Plan) -> dict[str, dict]:
    """Each job's retrain spec (its first rate's), as the run's searcher makes it."""
    from suite.backbones import backbone_sites

    sites = backbone_sites(p.backbone)
    out = {}
    for job in p.jobs():
        arch = get_method(job.method).architecture(sites, p.backbone).to_dict()
        out[job.method] = p.trial_spec(job, arch, p.retrain_lrs(arch)[0])
    return out


@pytest.mark.parametrize("backbone, full_lr", [("tiny-bert", 2e-5), ("tiny-t5", 1e-4), ("tiny-llama", 2e-5)])
def test_full_fine_tuning_has_its_own_default_and_an_explicit_lr_is_every_architectures(backbone, full_lr):
    """The defaults README "A fair fight" states per backbone family; an explicit --lr is every
    architecture's, full fine-tuning's too, and so is a grid."""
    from suite.learning_rate import DEFAULT_LR

    p = lr_plan(backbone)
    assert p.harness.lr == 3e-4 == DEFAULT_LR and p.full_lr == full_lr  # the paper's; full fine-tuning its own
    specs = retrain_specs(p)
    assert specs["lora"]["harness"]["lr"] == 3e-4 and specs["full"]["harness"]["lr"] == full_lr
    given = lr_plan(backbone, "--lr", "1e-3")
    assert given.harness.lr == 1e-3 and given.full_lr is None
    assert [s["harness"]["lr"] for s in retrain_specs(given).values()] == [1e-3, 1e-3]
    grid = lr_plan(backbone, "--lr-grid", "1e-3,1e-4", "--lr", "5e-4")  # searches at --lr, retrains by the grid
    assert grid.full_lr is None and grid.harness.lr == 5e-4
    assert all(grid.retrain_lrs({"full_finetune": f}) == (1e-4, 1e-3) for f in (True, False))


def test_a_retrain_trains_at_its_specs_learning_rate(monkeypatch):
    import suite.harness
    from suite.learning_rate import trial_lr

    seen = []

    class Recording(suite.harness.Trainer):
        def __init__(self, params, lr, *args, **kwargs):
            seen.append(lr)
            super().__init__(params, lr, *args, **kwargs)

    monkeypatch.setattr(suite.harness, "Trainer", Recording)
    specs = retrain_specs(lr_plan("tiny-bert"))
    for name in ("lora", "full"):
        retrain(specs[name])
    assert seen == [trial_lr(specs[name]) for name in ("lora", "full")] == [3e-4, 2e-5]
