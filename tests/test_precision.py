"""``--precision``: how ``auto`` resolves, what runs in bf16 and what stays fp32, fp32 as before, the
same decisions at both precisions, and the precision in the records, the plan and the tables."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from helpers import capped_context, toy_experiment

from core.training import autocast_context, fast_bf16, resolve_precision
from methods import get_method
from spaces import build_space


# ---- the policy -------------------------------------------------------------------------------------
@pytest.mark.parametrize("avx512_bf16,amx,expected", [(True, False, "bf16"), (False, True, "bf16"),
                                                      (True, True, "bf16"), (False, False, "fp32")])
def test_auto_on_a_cpu_is_bf16_exactly_where_torch_detects_a_fast_path(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == expected and fast_bf16(cpu) == (expected == "bf16")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"  # as asked


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cuda_follows_its_bf16_support(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_precision("auto", torch.device("cuda")) == ("bf16" if supported else "fp32")


def test_unknown_precisions_are_errors_that_name_the_choices():
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid: auto, bf16, fp32"):
        resolve_precision("fp16", torch.device("cpu"))
    from suite.harness import HarnessConfig

    with pytest.raises(ValueError, match="valid: auto, bf16, fp32"):
        HarnessConfig(precision="half")


def test_bf16_autocasts_the_matmuls_and_fp32_does_not():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast_context(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), "fp32"):
        assert (a @ b).dtype == torch.float32


# ---- what stays fp32 --------------------------------------------------------------------------------
def test_a_bf16_retrain_keeps_fp32_weights_gradients_and_loss():
    from core.training import Trainer
    from spaces.inject import inject_fixed

    exp = toy_experiment("tiny-bert", precision="bf16")
    task_model = exp.new_model()
    inject_fixed(task_model.model, get_method("lora").architecture(exp.sites, "tiny-bert"), exp.sites)
    for p in task_model.head_parameters():
        p.requires_grad_(True)
    trainer = Trainer(task_model.parameters(), 1e-3, 10, autocast=exp.autocast)
    batch = next(iter(exp.loader(exp.splits.train, train=True)))
    seen = {}

    def forward():
        seen["logits"] = task_model.model(**task_model.model_inputs(batch)).logits.dtype
        seen["loss"] = task_model(batch)
        return seen["loss"]

    trainer.step(forward, on_grads=lambda: seen.update(grads={p.grad.dtype for p in trainer.params}))
    assert seen["logits"] == torch.bfloat16  # the backbone did run in bf16
    assert seen["loss"].dtype == torch.float32 and seen["grads"] == {torch.float32}
    assert {p.dtype for p in trainer.params} == {torch.float32}
    assert {v.dtype for s in trainer.optimizer.state.values() for v in s.values() if v.dim()} == {torch.float32}


def test_bipeft_architecture_weights_and_statistics_stay_fp32_under_bf16():
    from methods.bipeft.config import BIPEFTConfig
    from methods.bipeft.gates import DisentangledWeights
    from methods.bipeft.method import BIPEFT
    from methods.bipeft.sensitivity import GradientTape
    from methods.bipeft.session import SearchSession

    exp = toy_experiment("tiny-bert", precision="bf16")
    ctx = exp.search_context(build_space("s2", exp.sites), 1500)
    run = SearchSession(ctx, BIPEFTConfig(), DisentangledWeights)
    tape = GradientTape(run.net)
    grads, step = [], run.arch_optimizer.step
    run.arch_optimizer.step = lambda: (grads.extend(p.grad.dtype for p in (run.arch.theta, run.arch.phi)
                                                    if p.grad is not None), step())[1]
    _, tra, val, _ = BIPEFT._paper_step(run, tape, 0, 5.0)
    assert run.arch.theta.dtype == run.arch.phi.dtype == torch.float32
    assert grads == [torch.float32, torch.float32]  # Θ's gradient in the Θ step, Φ's in the Φ step
    assert tra.g.dtype == val.g.dtype == torch.float32 and tra.g.abs().sum() > 0
    assert {p.dtype for p in run.trainer.params} == {torch.float32}


def test_s3delta_alpha_and_its_second_order_gradient_stay_float64_under_bf16(monkeypatch):
    from methods.s3delta import method as s3delta

    seen, unrolled = [], s3delta.unrolled_arch_grad

    def recorded(alpha, *args):
        grad = unrolled(alpha, *args)
        seen.append((alpha.dtype, grad.dtype))
        return grad

    monkeypatch.setattr(s3delta, "unrolled_arch_grad", recorded)
    exp = toy_experiment("tiny-bert", precision="bf16")
    get_method("s3delta").search(capped_context(exp, build_space("s2", exp.sites), 1500, max_steps=2))
    assert seen == [(torch.float64, torch.float64)] * 2


# ---- fp32 is the code path before --precision, bf16 is not -----------------------------------------
def _retrain(precision: str, autocast=None):
    exp = toy_experiment("tiny-bert", max_steps=6, eval_every=3, precision=precision)
    if autocast is not None:
        exp.autocast = autocast
    return exp.retrain(get_method("lora").architecture(exp.sites, "tiny-bert"))


def test_fp32_retrains_bit_for_bit_as_without_autocast_and_bf16_differs():
    fp32, plain, bf16 = _retrain("fp32"), _retrain("bf16", contextlib.nullcontext), _retrain("bf16")
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    assert fp32.history == plain.history and fp32.test == plain.test
    assert all(torch.equal(fp32.weights[k], plain.weights[k]) for k in fp32.weights)
    assert any(not torch.equal(fp32.weights[k], bf16.weights[k]) for k in fp32.weights)
    assert fp32.train_examples == bf16.train_examples == 6 * 8  # 6 steps of batch 8
    assert fp32.train_tokens == sum(int(b["attention_mask"].sum()) for b, _ in zip(
        _cycle(toy_experiment("tiny-bert", max_steps=6)), range(6)))


def _cycle(exp):
    while True:
        yield from exp.loader(exp.splits.train, train=True)


def test_bf16_retrains_bit_for_bit_with_and_without_its_frozen_cast_cache(monkeypatch):
    import suite.harness

    cached = _retrain("bf16")
    monkeypatch.setattr(suite.harness, "cache_frozen_casts", lambda model: model)  # plain autocast, cast per call
    plain = _retrain("bf16")
    assert cached.history == plain.history and cached.test == plain.test and cached.predictions == plain.predictions
    assert all(torch.equal(cached.weights[k], plain.weights[k]) for k in cached.weights)


def test_a_frozen_linear_is_cast_once_and_again_only_when_it_changes():
    from core.training import FrozenCastLinear, cache_frozen_casts

    linear = cache_frozen_casts(torch.nn.Sequential(torch.nn.Linear(8, 4)))[0].requires_grad_(False)
    assert type(linear) is FrozenCastLinear and linear.weight.dtype == torch.float32  # the fp32 parameter stays
    x = torch.randn(3, 8)
    with autocast_context(torch.device("cpu"), "bf16"):
        first = linear(x)
        kept = linear._frozen_cast[1]
        assert torch.equal(first, torch.nn.functional.linear(x, linear.weight, linear.bias))  # autocast's product
        assert first.dtype == torch.bfloat16 and kept.dtype == torch.bfloat16
        linear(x)
        assert linear._frozen_cast[1] is kept  # not cast again
        with torch.no_grad():
            linear.weight.mul_(2.0)
        assert torch.equal(linear(x), torch.nn.functional.linear(x, linear.weight, linear.bias))
        assert linear._frozen_cast[1] is not kept  # the changed weight is cast anew
    assert linear(x).dtype == torch.float32  # outside autocast: fp32, as nn.Linear


def test_a_trained_linear_takes_no_cached_cast_and_gets_its_gradient():
    from core.training import cache_frozen_casts

    linear = cache_frozen_casts(torch.nn.Sequential(torch.nn.Linear(8, 4)))[0]  # full fine-tuning: it trains
    with autocast_context(torch.device("cpu"), "bf16"):
        linear(torch.randn(3, 8)).float().sum().backward()
    assert getattr(linear, "_frozen_cast", None) is None
    assert linear.weight.grad is not None and linear.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("method,config", [("s3delta", {}), ("prunepeft", {"schedule": "iterative"}), ("bipeft", {})])
def test_fp32_searches_as_without_autocast(method, config):
    def search(autocast=None):
        exp = toy_experiment("tiny-bert", precision="fp32")
        ctx = capped_context(exp, build_space("s2", exp.sites), 1500, max_steps=6)
        if autocast is not None:
            ctx = dataclasses.replace(ctx, autocast=autocast)
        return get_method(method, config).search(ctx)

    a, b = search(), search(contextlib.nullcontext)
    assert a.architecture == b.architecture
    assert {k: v for k, v in a.info.items() if "time" not in k} == {k: v for k, v in b.info.items() if "time" not in k}


# ---- the same decisions at both precisions where the margins are large -----------------------------
@pytest.mark.parametrize("method,config", [("s3delta", {}), ("prunepeft", {"schedule": "iterative"}),
                                           ("bipeft", {"max_triggers": 3, "window": 2, "report_every": 1})])
def test_bf16_and_fp32_make_the_same_architecture_decisions(method, config):
    def search(precision):
        exp = toy_experiment("tiny-bert", precision=precision, lr=3e-3)
        seen = []
        ctx = capped_context(exp, build_space("s2", exp.sites), 1500, max_steps=16, report=seen.append)
        arch = get_method(method, config).search(ctx).architecture
        return arch, [v for row in seen for k, v in row.items() if k.startswith("loss")]

    (bf16, bf16_losses), (fp32, fp32_losses) = search("bf16"), search("fp32")
    assert bf16 == fp32
    assert bf16_losses != fp32_losses  # the two did train at different precisions


# ---- the precision in the plan, the records and the tables ------------------------------------------
def test_precision_is_a_plan_option_and_an_old_bf16_plan_still_loads(tmp_path, capsys):
    from suite.cli import build_parser
    from suite.inputs import make_plan
    from suite.plan import Plan

    args = build_parser().parse_args(["run", "--methods", "lora", "--backbone", "tiny-bert", "--precision", "fp32"])
    assert make_plan(args).harness.precision == "fp32"
    with pytest.raises(SystemExit) as e:  # argparse: one line, exit 2
        build_parser().parse_args(["run", "--methods", "lora", "--precision", "fp16"])
    assert e.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err
    old = {"methods": ["lora"], "space": "s2", "tasks": ["demo/rotten_tomatoes"], "backbone": "tiny-bert",
           "seeds": [0], "harness": {"epochs": 1, "bf16": False}}
    assert Plan.from_dict(old).harness_overrides() == {"epochs": 1, "precision": "fp32"}
    assert Plan.from_dict({**old, "harness": {"bf16": True}}).harness_overrides() == {}  # auto: the default


def test_resume_takes_no_precision(tmp_path, capsys):
    from suite.cli import main

    (tmp_path / "run.json").write_text("{}")
    assert main(["run", "--resume", "--out", str(tmp_path), "--precision", "bf16"]) == 2
    assert "drop --precision" in capsys.readouterr().err


def test_records_store_the_precision_that_ran_not_auto():
    from suite.outcomes import RetrainResult, SearchOutcome
    from suite.plan import Job
    from suite.records import build_record

    job = Job("lora", "manual", "demo/rotten_tomatoes", 0, None, None, "manual")
    retrain = RetrainResult(validation={"accuracy": 50.0}, test={"accuracy": 50.0}, best_step=3, steps=3,
                            train_time_s=2.0, eval_time_s=1.0, peak_memory_mb=1.0, peft_params=10, head_params=2,
                            backbone_params=20, precision="bf16", train_examples=24, train_tokens=300)
    record = build_record(job, "ok", backbone="tiny-bert", backbone_params=20, harness={"precision": "auto"},
                          method_config={}, environment={}, retrain=retrain,
                          search=SearchOutcome({"space": "manual", "backbone": "tiny-bert", "placements": []}, 0.0))
    assert record["harness"]["precision"] == record["retrain"]["precision"] == "bf16"
    assert (record["retrain"]["train_examples"], record["retrain"]["train_tokens"]) == (24, 300)
    searched = build_record(job, "failed", backbone="tiny-bert", backbone_params=20, harness={}, method_config={},
                            environment={}, error="boom",
                            search=SearchOutcome({"space": "s2", "backbone": "tiny-bert", "placements": []}, 1.0,
                                                 {"precision": "fp32"}))
    assert searched["harness"]["precision"] == "fp32"


def _fixture_run(tmp_path):
    import json
    import shutil
    from pathlib import Path

    fixtures = Path(__file__).resolve().parent / "fixtures"
    out = tmp_path / "run"
    shutil.copytree(fixtures / "records", out / "records")
    shutil.copytree(fixtures / "predictions", out / "predictions")

    def edit(run_id, change):
        path = out / "records" / f"{run_id}.json"
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))

    return out, edit


def test_the_efficiency_table_gives_throughput_adapter_bytes_and_precision(tmp_path):
    from suite.report import write_reports

    out, edit = _fixture_run(tmp_path)
    counted = {0: (3000, 90_000, 7000), 1: (3000, 90_000, 9000), 2: (3000, 60_000, 8000)}
    for seed, (examples, tokens, size) in counted.items():
        def change(r, examples=examples, tokens=tokens, size=size):
            r["retrain"].update(train_examples=examples, train_tokens=tokens)
            r["files"]["weights"] = {"path": "weights/x.safetensors", "sha256": "0", "bytes": size}
        edit(f"bitfit--manual--glue_mrpc--seed{seed}--bnone", change)
    write_reports(out, reference="bipeft")
    text = (out / "efficiency.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| BitFit"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    import json

    seconds = []
    for seed in counted:
        r = json.loads((out / "records" / f"bitfit--manual--glue_mrpc--seed{seed}--bnone.json").read_text())
        seconds.append(r["time"]["retrain_s"] - r["time"]["eval_s"])
    examples = sum(counted[s][0] / seconds[s] for s in counted) / 3  # MRPC's mean; STS-B counted nothing
    tokens = sum(counted[s][1] / seconds[s] for s in counted) / 3
    assert cells == ["BitFit", "bf16", f"{examples:,.1f}", f"{tokens:,.0f}", "8,000", "6 ok"]
    assert "Precision: every run bf16 autocast" in text and "Precision: every run bf16" in (out / "accuracy.md").read_text()


def test_a_table_that_mixes_precisions_says_so(tmp_path):
    from suite.report import write_reports

    out, edit = _fixture_run(tmp_path)
    edit("lora--manual--glue_mrpc--seed0--bnone", lambda r: r["retrain"].update(precision="fp32"))
    write_reports(out, reference="bipeft")
    for name in ("accuracy.md", "efficiency.md"):  # 44 ok runs (the failed one never trained)
        assert "Precision: MIXED, 43 bf16, 1 fp32 runs" in (out / name).read_text()
    line = next(x for x in (out / "efficiency.md").read_text().splitlines() if x.startswith("| LoRA"))
    assert [c.strip() for c in line.strip("|").split("|")][1] == "bf16, fp32"
