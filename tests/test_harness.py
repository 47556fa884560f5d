"""The retrain harness on tiny models of every family, and the search context it hands methods."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_experiment

from methods import get_method
from spaces import build_space
from spaces.space import count_params


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-t5", "tiny-llama"])
def test_retrain_reports_everything(backbone):
    exp = toy_experiment(backbone, max_steps=6, eval_every=3, scoring="generate")
    arch = get_method("bitfit").architecture(exp.sites, backbone)
    seen = []
    result = exp.retrain(arch, report=seen.append)
    assert result.steps == 6 and [h["step"] for h in result.history] == [3, 6] and len(seen) == 2
    assert result.peft_params == count_params(exp.sites, arch)
    assert result.head_params == (66 if backbone == "tiny-bert" else 0)
    assert result.backbone_params == exp.sites.backbone_params
    assert 0 < result.ratio < 1
    assert set(result.test) == {"accuracy"} and set(result.validation) == {"accuracy"}
    assert result.best_step in (3, 6) and result.train_time_s > 0 and result.peak_memory_mb > 0


def test_retrain_learns_and_selects_best_checkpoint():
    exp = toy_experiment("tiny-bert", epochs=6, eval_every=4, lr=3e-3)
    arch = get_method("lora").architecture(exp.sites, "tiny-bert")
    result = exp.retrain(arch)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    best = max(h["val_accuracy"] for h in result.history)
    assert result.validation["accuracy"] == best


def test_retrain_is_deterministic_per_seed():
    a = toy_experiment("tiny-bert", max_steps=4).retrain(get_method("lnfit").architecture(
        toy_experiment("tiny-bert").sites, "tiny-bert"))
    b = toy_experiment("tiny-bert", max_steps=4).retrain(get_method("lnfit").architecture(
        toy_experiment("tiny-bert").sites, "tiny-bert"))
    assert a.history == b.history and a.test == b.test


def test_regression_task_on_encoder_and_decoder():
    for backbone in ("tiny-bert", "tiny-llama"):
        exp = toy_experiment(backbone, kind="regression", max_steps=3)
        result = exp.retrain(get_method("bitfit").architecture(exp.sites, backbone))
        assert set(result.test) == {"pearson", "spearmanr"}


def test_search_context_never_holds_the_test_split():
    exp = toy_experiment("tiny-bert")
    space = build_space("s2", exp.sites)
    ctx = exp.search_context(space, budget=1000)
    seen = set()
    for loader in (ctx.weight_train, ctx.arch_train, ctx.train, ctx.validation):
        for batch in loader:
            seen.update(batch["input_ids"].flatten().tolist())
    assert {i for b in ctx.train for i in b["index"].tolist()} == set(range(len(exp.splits.train)))
    weight_idx = {i for b in ctx.weight_train for i in b["index"].tolist()}
    arch_idx = {i for b in ctx.arch_train for i in b["index"].tolist()}
    assert len(weight_idx) + len(arch_idx) == len(exp.splits.train)
    assert ctx.total_steps == len(ctx.weight_train) * exp.epochs
    model = ctx.make_model()
    assert set(ctx.evaluate(model)) == {"accuracy"}
    assert isinstance(model(next(iter(ctx.weight_train))), torch.Tensor)


def test_harness_config_rejects_bad_values():
    from suite.harness import HarnessConfig

    with pytest.raises(ValueError, match="scoring"):
        HarnessConfig(scoring="beam")
    with pytest.raises(ValueError, match="max_steps must be a positive int"):
        HarnessConfig(max_steps=0)


def test_the_plan_and_the_harness_agree_on_the_search_steps():
    """The plan's step check counts what the harness will run, with both training limits given: the
    fraction is of the whole split (32 of 64), not of what ``max_train_samples`` left (20 of 40)."""
    from helpers import toy_splits

    from suite.harness import Experiment, HarnessConfig
    from suite.plan import Plan, planned_search_steps
    from suite.tasks import get_task

    task = "demo/rotten_tomatoes"  # only counted here: no batch is built, so the toy examples do
    limits = {"max_train_samples": 40, "train_fraction": 0.5, "batch_size": 4, "epochs": 3, "max_steps": 11}
    for harness in (limits, {**limits, "max_steps": None}):
        exp = Experiment(get_task(task), toy_splits(n_train=64), "tiny-bert", 0, HarnessConfig(**harness))
        ctx = exp.search_context(build_space("s2", exp.sites), budget=1000)
        plan = Plan(methods=("bipeft",), space="s2", tasks=(task,), backbone="tiny-bert", seeds=(0,),
                    harness={k: v for k, v in harness.items() if v is not None})
        assert len(exp.splits.train) == HarnessConfig(**harness).train_size(64) == 32
        assert planned_search_steps(plan, task, 64) == (ctx.steps_per_epoch, ctx.total_steps)
    assert ctx.total_steps == 4 * 3


def test_the_training_step_is_adamw_with_linear_decay_and_clipping_in_that_order():
    """``core.training.Trainer`` against the loop the harness and the searches wrote by hand: the same
    weights bit for bit; ``on_grads`` sees the raw gradients; a NaN loss names its step."""
    from core.schedules import linear_decay
    from core.training import Trainer

    def batches():
        g = torch.Generator().manual_seed(0)
        return [(torch.randn(4, 3, generator=g) * 10, torch.randn(4, generator=g)) for _ in range(4)]

    torch.manual_seed(0)
    mine, theirs = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    theirs.load_state_dict(mine.state_dict())
    trainer = Trainer(mine.parameters(), lr=0.1, total_steps=4, weight_decay=0.01, grad_clip=0.5)
    optimizer = torch.optim.AdamW(theirs.parameters(), lr=0.1, weight_decay=0.01)
    schedule = linear_decay(optimizer, 4)
    raw = []
    for x, y in batches():
        trainer.step(lambda x=x, y=y: ((mine(x).squeeze(-1) - y) ** 2).mean(),
                     on_grads=lambda: raw.append(mine.weight.grad.norm().item()))
        loss = ((theirs(x).squeeze(-1) - y) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        unclipped = theirs.weight.grad.norm().item()
        torch.nn.utils.clip_grad_norm_(list(theirs.parameters()), 0.5)
        optimizer.step()
        schedule.step()
        assert raw[-1] == unclipped > 0.5
    assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    assert trainer.steps == 4 and trainer.lr == 0.0
    with pytest.raises(FloatingPointError, match="non-finite training loss nan at step 4"):
        trainer.step(lambda: torch.tensor(float("nan"), requires_grad=True))
