"""The retrain harness on tiny models of every family, and the search context it hands methods."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model, toy_examples, toy_experiment, toy_splits, toy_task

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


def test_search_context_never_holds_the_test_split(monkeypatch):
    from suite.data import Splits
    from suite.harness import Experiment, HarnessConfig

    # validation and test of different sizes, every test sentence marked: a swap of the two cannot pass
    test = [{**ex, "sentence": f"{ex['sentence']} zebra"} for ex in toy_examples(12, 2)]
    exp = Experiment(toy_task(), Splits(toy_examples(64, 0), toy_examples(16, 1), test), "tiny-bert", 0,
                     HarnessConfig())
    ctx = exp.search_context(build_space("s2", exp.sites), budget=1000)

    def rows(loader) -> list[tuple[int, ...]]:
        """Each example of ``loader`` as its unpadded token ids."""
        return [tuple(ids[mask.bool()].tolist())
                for b in loader for ids, mask in zip(b["input_ids"], b["attention_mask"])]

    test_rows = set(rows(exp.loader(exp.splits.test, train=False)))
    validation_rows = rows(exp.loader(exp.splits.validation, train=False))
    assert len(test_rows) == 12 and not test_rows & set(validation_rows)
    for loader in (ctx.weight_train, ctx.arch_train, ctx.train, ctx.validation):
        assert not set(rows(loader)) & test_rows, "a search loader holds test examples"
    assert sorted(rows(ctx.validation)) == sorted(validation_rows), "the search's validation is not the split's"
    assert {i for b in ctx.train for i in b["index"].tolist()} == set(range(len(exp.splits.train)))
    weight_idx = {i for b in ctx.weight_train for i in b["index"].tolist()}
    arch_idx = {i for b in ctx.arch_train for i in b["index"].tolist()}
    assert len(weight_idx) + len(arch_idx) == len(exp.splits.train)
    assert ctx.total_steps == len(ctx.weight_train) * exp.epochs
    scored = []
    evaluate = exp.evaluate
    monkeypatch.setattr(exp, "evaluate", lambda tm, examples: scored.append(examples) or evaluate(tm, examples))
    model = ctx.make_model()
    assert set(ctx.evaluate(model)) == {"accuracy"}
    assert len(scored) == 1 and scored[0] is exp.splits.validation, "the search's evaluate is not on validation"
    assert isinstance(model(next(iter(ctx.weight_train))), torch.Tensor)


def checkpoint_declaring(folder, declared: str | None) -> str:
    """tiny-bert saved as a local checkpoint; with ``declared``, a sentence-transformers one whose
    ``modules.json`` declares that pooling (as all-MiniLM-L6-v2 declares mean pooling)."""
    import json

    from suite.backbones import load_tokenizer

    tiny_model("tiny-bert").save_pretrained(folder)
    load_tokenizer("tiny-bert").save_pretrained(folder)
    if declared:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": declared == "cls",
             "pooling_mode_mean_tokens": declared == "mean"}))
    return str(folder)


@pytest.mark.parametrize("declared, pooling", [("mean", "mean"), ("cls", "cls"), (None, "cls")])
def test_the_head_reads_the_pooling_the_checkpoint_declares(tmp_path, declared, pooling):
    """A sentence-transformers checkpoint's head reads the mean of the last hidden states over the
    attention mask; any other, BERT's [CLS] pooler."""
    from suite.data import Splits
    from suite.harness import Experiment, HarnessConfig

    backbone = checkpoint_declaring(tmp_path, declared)
    splits = toy_splits()
    shorter = [{**ex, "sentence": " ".join(ex["sentence"].split()[:2 + i % 5])} for i, ex in enumerate(splits.test)]
    exp = Experiment(toy_task(), Splits(splits.train, shorter, shorter), backbone, 0,  # padded batches
                     HarnessConfig(max_steps=1, max_eval_samples=8))
    task_model = exp.new_model().eval()
    batch = next(iter(exp.loader(exp.splits.validation, train=False)))
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    assert not inputs["attention_mask"].all()
    bert = task_model.model.bert
    with torch.no_grad():
        hidden = bert(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        features = (hidden * mask).sum(1) / mask.sum(1) if pooling == "mean" else bert.pooler(hidden)
        torch.testing.assert_close(task_model.model(**inputs).logits, task_model.model.classifier(features))
    arch = get_method("bitfit").architecture(exp.sites, backbone)
    assert exp.retrain(arch, test=False).pooling == pooling  # what the record says


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
                    harness=HarnessConfig(**harness))
        assert len(exp.splits.train) == HarnessConfig(**harness).train_size(64) == 32
        assert planned_search_steps(plan, task, 64) == (ctx.steps_per_epoch, ctx.total_steps)
        # a search driven by the whole train split's batches (PrunePEFT)
        assert planned_search_steps(plan, task, 64, over="train") == (ctx.steps_per_epoch, ctx.train_steps)
    assert ctx.total_steps == 4 * 3
    assert ctx.train_steps == 8 * 3


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


# ---- mid-trial checkpoints ------------------------------------------------------------------------
class Killed(Exception):
    """The loop stopped as a killed trial stops: at once, after a checkpoint."""


class BytesCheckpoints:
    """A checkpoint store that keeps the latest state as the bytes ``torch.save`` wrote (and reads it
    back as a resumed trial does); the save numbered ``kill_at`` raises :class:`Killed`."""

    def __init__(self, kill_at: int | None = None):
        self.saved, self.rows, self.kill_at = None, [], kill_at

    def latest(self):
        import io

        return None if self.saved is None else torch.load(io.BytesIO(self.saved), map_location="cpu",
                                                         weights_only=True)

    def save(self, state, row):
        import io

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.saved = buffer.getvalue()
        self.rows.append(row)
        if len(self.rows) == self.kill_at:
            raise Killed


@pytest.mark.parametrize("every, kill_at, resumed_at", [
    ("5", 2, 10),    # mid-epoch (8 steps an epoch), between two validations (every 3 steps)
    ("8", 2, 16),    # at the end of the second epoch, the best state already set
])
def test_a_retrain_stopped_after_a_checkpoint_continues_bit_for_bit(monkeypatch, every, kill_at, resumed_at):
    """Weights, metrics, history and predictions of a retrain stopped after a checkpoint and run again
    from it are those of an unbroken retrain: the weights, optimizer, schedule, best state, history,
    dropout's RNG and the loader's place in its shuffled epoch all come back."""
    from suite import backbones

    tiny = backbones.tiny_config

    def with_dropout(name):  # the tiny models have none: here the RNG state matters
        config = tiny(name)
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.1
        return config

    monkeypatch.setattr(backbones, "tiny_config", with_dropout)

    def retrain(checkpoints=None):
        exp = toy_experiment("tiny-bert", epochs=3, eval_every=3, lr=3e-3, checkpoint_every=every)
        return exp.retrain(get_method("lora").architecture(exp.sites, "tiny-bert"), checkpoints=checkpoints)

    whole = retrain()
    store = BytesCheckpoints(kill_at=kill_at)
    with pytest.raises(Killed):
        retrain(store)
    assert store.rows[-1] == {"step": resumed_at, "total": 24, "phase": "retrain"}
    torch.manual_seed(12345)  # a new process: whatever its RNG held
    store.kill_at = None
    resumed = retrain(store)
    assert whole.resumed_at == [] and resumed.resumed_at == [resumed_at]
    assert (whole.checkpoint_every, resumed.checkpoint_every) == ("off", every)  # no store: nothing saved
    assert whole.steps == resumed.steps == 24 and whole.best_step == resumed.best_step
    assert (resumed.train_examples, resumed.train_tokens) == (whole.train_examples, whole.train_tokens)
    assert resumed.history == whole.history and resumed.validation == whole.validation
    assert resumed.test == whole.test and resumed.predictions == whole.predictions
    assert whole.weights.keys() == resumed.weights.keys()
    assert all(torch.equal(whole.weights[k], resumed.weights[k]) for k in whole.weights)
    assert [r["step"] for r in store.rows] == [s for s in range(int(every), 24, int(every))]


def test_checkpoint_every_takes_steps_a_time_or_off():
    from suite.checkpoints import Interval
    from suite.harness import HarnessConfig

    assert Interval.parse("500") == Interval(steps=500) and Interval.parse("off") == Interval()
    assert Interval.parse("90s").seconds == 90 and Interval.parse("1.5h").seconds == 5400
    assert Interval.parse(HarnessConfig().checkpoint_every) == Interval(seconds=600)  # the default: 10m
    assert Interval(steps=4).due(8, 0.0) and not Interval(steps=4).due(9, 1e9)
    assert Interval(seconds=60).due(1, 60.0) and not Interval(seconds=60).due(1, 59.9) and not Interval().due(1, 1e9)
    for bad in ("0", "-5", "10x", "m", "1e3", ""):
        with pytest.raises(ValueError, match=f"checkpoint_every must be .* or off, got '{bad}'"):
            HarnessConfig(checkpoint_every=bad)
