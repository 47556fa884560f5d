"""IA3 and DoRA: the same logits (and DoRA the same gradients) as peft's for the same weights, the
manual baselines' placements and counts, their recipe, and what the peft export refuses.

(The op catalogue, ``tests/test_ops.py``, runs both ops through counting, identity at init,
freezing and search == fixed; ``tests/test_export.py`` exports both to peft and loads them back.)
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_inputs, tiny_model

from methods import get_method
from spaces.architecture import Architecture, Placement, Site
from spaces.inject import inject_fixed
from spaces.sites import describe
from spaces.space import count_params
from suite.backbones import backbone_sites
from suite.export import ExportError, refuse_for_peft
from suite.recipe import LORA_SCALING, op_options


def _pair(family: str):
    """Two copies of the same tiny model (float64, so that only the formulas can differ)."""
    return tiny_model(family).double(), tiny_model(family).double()


def _randomise(ops, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for op in ops:
            for p in op.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def _assert_same_change(family: str, inputs, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """The ops change the tiny model's logits (by more than the 1e-5 asked of the parity), and ours
    and peft's agree to float64 rounding."""
    with torch.no_grad():
        before = tiny_model(family).double()(**inputs).logits
    assert (ours - before).abs().max() > 1e-5
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def _peft_ia3_modules(model) -> set[str]:
    return {name.removeprefix("base_model.model.").removesuffix(".ia3_l.default")
            for name, _ in model.named_parameters() if "ia3_l" in name}


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-t5", "tiny-llama"])
def test_ia3_baseline_gives_peft_ia3s_logits(family):
    from peft import IA3Config, get_peft_model

    ours, theirs = _pair(family)
    sites = describe(ours)
    arch = get_method("ia3").architecture(sites, family)
    ops = inject_fixed(ours, arch)
    _randomise(ops, seed=0, scale=0.5)
    modules = {sites.spec(p.site).module: op for p, op in zip(arch.placements, ops)}
    feedforward = sorted(m for m, op in modules.items() if op.role == "parallel")
    assert feedforward and len(feedforward) == len(sites.sites("linear", ("ffn.down",)))
    theirs = get_peft_model(theirs, IA3Config(target_modules=sorted(modules), feedforward_modules=feedforward))
    assert _peft_ia3_modules(theirs) == set(modules)
    with torch.no_grad():
        for module, op in modules.items():
            vector = theirs.base_model.model.get_submodule(module).ia3_l["default"]
            assert vector.numel() == op.scale.numel()  # d_out on an output scale, d_in on ffn.down
            vector.copy_(op.scale.view_as(vector))
        inputs = tiny_inputs(family)
        _assert_same_change(family, inputs, ours(**inputs).logits, theirs(**inputs).logits)


@pytest.mark.parametrize("family, beyond_ours", [
    ("tiny-llama", set()),  # peft's mapping, exactly
    ("tiny-t5", {f"decoder.block.{i}.layer.1.EncDecAttention.{p}" for i in (0, 1) for p in "kv"}),
    ("tiny-bert", {f"bert.encoder.layer.{i}.attention.output.dense" for i in (0, 1)}),
])
def test_ia3_baseline_is_peft_default_but_where_its_names_reach_further(family, beyond_ours):
    """The docstring of ``methods.manual`` names the two differences: T5's cross-attention (which the
    suite never adapts) and BERT's attention output (which peft's ``output.dense`` also matches)."""
    from peft import IA3Config, get_peft_model

    model = tiny_model(family)
    sites = describe(model)
    ours = {sites.spec(p.site).module for p in get_method("ia3").architecture(sites, family).placements}
    default = _peft_ia3_modules(get_peft_model(model, IA3Config()))
    assert ours <= default and default - ours == beyond_ours


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-t5"])
@pytest.mark.parametrize("scaling", [2.0, LORA_SCALING])
def test_dora_baseline_gives_peft_doras_logits_and_gradients(family, scaling):
    from peft import LoraConfig, get_peft_model

    ours, theirs = _pair(family)
    sites = describe(ours)
    arch = get_method("dora").architecture(sites, family)
    ops = inject_fixed(ours, arch, op_options={"dora": {"scaling": scaling}})
    _randomise(ops, seed=1, scale=0.1)
    modules = {sites.spec(p.site).module: op for p, op in zip(arch.placements, ops)}
    theirs = get_peft_model(theirs, LoraConfig(r=8, lora_alpha=8 * scaling, lora_dropout=0.0, use_dora=True,
                                               target_modules=sorted(modules)))
    layers = {m: theirs.base_model.model.get_submodule(m) for m in modules}
    with torch.no_grad():
        for module, op in modules.items():
            layer = layers[module]
            layer.lora_A["default"].weight.copy_(op.A)
            layer.lora_B["default"].weight.copy_(op.B)
            base_norm = torch.linalg.norm(layer.get_base_layer().weight, dim=1)
            layer.lora_magnitude_vector["default"].weight.copy_(base_norm + op.magnitude)
    inputs = tiny_inputs(family)
    ours_out, theirs_out = ours(**inputs).logits, theirs(**inputs).logits
    _assert_same_change(family, inputs, ours_out.detach(), theirs_out.detach())
    ours_out.pow(2).sum().backward()
    theirs_out.pow(2).sum().backward()
    for module, op in modules.items():  # the detached norm (DoRA §4.3) as peft detaches it
        layer = layers[module]
        for mine, peft_param in ((op.A, layer.lora_A["default"].weight), (op.B, layer.lora_B["default"].weight),
                                 (op.magnitude, layer.lora_magnitude_vector["default"].weight)):
            torch.testing.assert_close(mine.grad, peft_param.grad, rtol=1e-7, atol=1e-10)


def test_baselines_counts_on_minilm_and_placements():
    sites = backbone_sites("all-MiniLM-L6-v2")  # 6 layers, hidden 384, FFN 1,536
    ia3 = get_method("ia3").architecture(sites, "all-MiniLM-L6-v2")
    dora = get_method("dora").architecture(sites, "all-MiniLM-L6-v2")
    assert count_params(sites, ia3) == 6 * (384 + 384 + 1536) == 13_824
    assert count_params(sites, dora) == 6 * 2 * (8 * (384 + 384) + 384) == 78_336
    assert count_params(sites, dora) - count_params(sites, get_method("lora").architecture(sites, "")) == 12 * 384
    assert {p.site.position for p in ia3.placements} == {"attn.k", "attn.v", "ffn.down"}
    assert {(p.site.position, p.size) for p in dora.placements} == {("attn.q", 8), ("attn.v", 8)}
    assert get_method("ia3").kind == get_method("dora").kind == "manual"


def test_recipes_dora_follows_loras_scale_and_ia3_has_none():
    suite = op_options("suite", get_method("dora"))
    assert suite["dora"] == suite["lora"] == {"scaling": LORA_SCALING}
    assert op_options("authors", get_method("dora")) == {"dora": {"scaling": 2.0}}
    assert op_options("authors", get_method("ia3")) == {}


def _record_inputs(op, seen: dict) -> None:
    original = op.delta

    def delta(x, host):
        seen[op.name] = x
        return original(x, host)

    op.delta = delta


def test_a_projection_op_on_berts_ffn_reads_the_intermediate_beside_a_parallel_adapter():
    """BERT's FFN sub-layer and its output projection share a host; the parallel adapter reads the
    FFN's input through a stash, the projection's ops (IA3's input scale, LoRA) its own input."""
    model = tiny_model("tiny-bert")
    arch = Architecture("t", "tiny-bert", (Placement(Site("enc", 0, "ffn.down"), "ia3"),
                                           Placement(Site("enc", 0, "ffn.down"), "lora", 4),
                                           Placement(Site("enc", 0, "ffn"), "adapter_parallel", 4)))
    seen: dict[str, torch.Tensor] = {}
    for op in inject_fixed(model, arch):
        _record_inputs(op, seen)
    layer = model.bert.encoder.layer[0]
    captured = {}

    def capture(name):
        def hook(module, args, out):
            captured[name] = out[0] if isinstance(out, tuple) else out
        return hook

    layer.intermediate.register_forward_hook(capture("intermediate"))  # the FFN's intermediate activation
    layer.attention.register_forward_hook(capture("attention"))  # the FFN's input
    with torch.no_grad():
        model(**tiny_inputs("tiny-bert"))
    assert torch.equal(seen["ia3"], captured["intermediate"]) and torch.equal(seen["lora"], captured["intermediate"])
    assert torch.equal(seen["adapter_parallel"], captured["attention"])


def _record(placements) -> dict:
    return {"run_id": "r", "backbone": "tiny-bert",
            "architecture": Architecture("s", "tiny-bert", tuple(placements)).to_dict()}


@pytest.mark.parametrize("placements, named", [
    ([Placement(Site("enc", 0, "attn.q"), "lora", 4), Placement(Site("enc", 0, "attn.k"), "ia3")],
     "ia3 and lora together"),
    ([Placement(Site("enc", 0, "attn.q"), "dora", 4), Placement(Site("enc", 0, "attn.v"), "lora", 4)],
     "dora and lora together"),
    ([Placement(Site("enc", 0, "attn.k"), "ia3"), Placement(Site("enc", 0, "attn.o"), "bitfit")],
     "bitfit at enc.0.attn.o (a peft IA3 adapter trains no bias)"),
    ([Placement(Site("enc", 0, "ln.ffn"), "lnfit")], "no LoRA, DoRA or IA3 placement"),
])
def test_peft_export_refuses_two_tuners_and_a_bias_ia3_cannot_carry(placements, named):
    with pytest.raises(ExportError, match="peft cannot express") as err:
        refuse_for_peft(_record(placements))
    assert named in str(err.value)


def test_peft_export_accepts_ia3_with_norms_and_dora_with_biases():
    refuse_for_peft(_record([Placement(Site("enc", 0, "attn.k"), "ia3"), Placement(Site("enc", 0, "ln.ffn"), "bitfit")]))
    refuse_for_peft(_record([Placement(Site("enc", 0, "attn.q"), "dora", 4), Placement(Site("enc", 0, "attn.o"), "bitfit")]))
