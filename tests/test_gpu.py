"""The op and harness tests again on a CUDA device: bf16 autocast, and GPUs per Ray trial.

Every test here is marked ``gpu`` and skips where ``torch.cuda.is_available()`` is false (this
project's CPU machines, CI); on a GPU machine ``pytest -m gpu`` runs them.
"""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_BACKBONES_FOR_OPS, tiny_inputs, tiny_model, toy_experiment
from test_ops import SIZED, _OneModuleSpace, _randomise, arch_with, specs_for

from methods import get_method
from spaces.inject import Supernet, inject_fixed
from spaces.ops import OPS
from spaces.sites import describe

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def logits_bf16(model, inputs):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return model(**{k: v.to(CUDA) for k, v in inputs.items()}).logits.float()


@pytest.mark.parametrize("family", TINY_BACKBONES_FOR_OPS)
@pytest.mark.parametrize("op", sorted(OPS))
def test_fixed_ops_train_in_fp32_under_bf16_autocast(family, op):
    model = tiny_model(family).to(CUDA)
    ops = inject_fixed(model, arch_with(describe(model), op))
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for o in ops for p in o.parameters())
    out = logits_bf16(model, tiny_inputs(family))
    assert torch.isfinite(out).all()
    out.pow(2).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for o in ops for p in o.parameters())


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-t5"])
@pytest.mark.parametrize("op", SIZED)
def test_search_one_hot_is_close_to_the_fixed_slice_under_bf16(family, op):
    k, sizes = 4, (1, 4, 8)
    search_model, fixed_model = tiny_model(family).to(CUDA), tiny_model(family).to(CUDA)
    sites = describe(search_model)
    net = Supernet(search_model, _OneModuleSpace(sites, specs_for(sites, op)[-1], op, sizes))
    (search_op,) = net.modules
    _randomise(search_op, seed=1)
    net.set_size_probs(torch.nn.functional.one_hot(torch.tensor(sizes.index(k)), 3).float().to(CUDA)[None])
    (fixed_op,) = inject_fixed(fixed_model, net.export([True], [k]))
    fixed_op.load_state_dict(search_op.sliced(k).state_dict())
    inputs = tiny_inputs(family)
    torch.testing.assert_close(logits_bf16(search_model, inputs), logits_bf16(fixed_model, inputs),
                               rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-t5", "tiny-llama"])
def test_retrain_on_the_gpu_with_bf16(backbone):
    exp = toy_experiment(backbone, max_steps=6, eval_every=3, device="cuda", bf16=True)
    result = exp.retrain(get_method("lora").architecture(exp.sites, backbone))
    assert exp.device.type == "cuda" and result.steps == 6
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    assert result.peak_memory_mb > 0 and set(result.test) == {"accuracy"}


@pytest.mark.ray
def test_gpus_per_trial_gives_each_trial_a_gpu(tmp_path, ray_session):
    from suite.cli import main
    from suite.rundir import load_records

    out = tmp_path / "run"
    assert main(["run", "--methods", "lora,bitfit", "--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes",
                 "--max-train-samples", "48", "--max-eval-samples", "24", "--epochs", "1",
                 "--gpus-per-trial", "0.5", "--out", str(out)]) == 0
    for record in load_records(out):
        assert record["status"] == "ok" and record["environment"]["hardware"]["gpus_per_trial"] == 0.5
        assert record["retrain"]["peak_memory_mb"] > 0
