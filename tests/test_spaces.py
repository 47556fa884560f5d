"""Sites per family and the SearchSpace API, over every registered space."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_BACKBONES, TINY_BACKBONES
from helpers import tiny_model

from methods import METHODS, get_method
from spaces import SPACES, build_space
from spaces.architecture import Architecture, Placement, Site
from spaces.inject import apply_architecture, trainable_parameters
from spaces.sites import UnsupportedBackbone, describe, family_of
from spaces.space import count_params
from suite.backbones import backbone_sites, build, load_config

T5_LARGE = SHARED_BACKBONES / "t5-large"
needs_t5_large = pytest.mark.skipif(not T5_LARGE.is_dir(), reason="../shared/backbones is absent")


@pytest.fixture(scope="module")
def t5_large_sites():
    return backbone_sites(str(T5_LARGE), vocab_size=32100)


@needs_t5_large
def test_t5_large_s2_has_916_modules_384_sized(t5_large_sites):
    space = build_space("s2", t5_large_sites)
    info = space.describe()
    assert (info["modules"], info["sized_modules"]) == (916, 384)
    assert info["per_op"] == {"lora": 288, "bitfit": 410, "adapter_lr": 96, "lnfit": 122}
    assert space.full_size() == 9_493_504  # methods.md Appendix A: 128.7‱
    assert t5_large_sites.backbone_params == 737_639_424


@needs_t5_large
@pytest.mark.parametrize("method, params", [
    ("lora", 1_572_864), ("adapter", 4_819_200), ("bitfit", 599_396), ("lnfit", 124_928), ("full", 737_639_424),
])
def test_t5_large_manual_baseline_counts(t5_large_sites, method, params):
    arch = get_method(method).architecture(t5_large_sites, "t5-large")
    assert count_params(t5_large_sites, arch) == params


@needs_t5_large
def test_t5_large_s1(t5_large_sites):
    space = build_space("s1", t5_large_sites)
    assert space.describe()["per_op"] == {"prefix": 48, "adapter_serial": 48, "adapter_parallel": 48}
    # serial/parallel adapter at width k: 2049k + 1024; prefix: 2048k + 1
    full = space.full()
    assert space.param_count(full) == 96 * (2049 * 8 + 1024) + 48 * (2048 * 8 + 1)


def test_sites_per_family():
    t5 = describe(tiny_model("tiny-t5"))
    assert {s.site.position for s in t5.specs if s.site.stack == "dec"} >= {"ln.cross", "ln.final", "lm_head"}
    assert not any("EncDecAttention" in s.module for s in t5.specs if s.kind == "linear")
    gated = describe(tiny_model("tiny-t5-gated"))
    assert gated.spec(Site("enc", 0, "ffn.gate")).module.endswith("wi_0")
    assert gated.spec(Site("enc", 0, "ffn.up")).module.endswith("wi_1")
    bert = describe(tiny_model("tiny-bert"))
    assert bert.spec(Site("enc", 1, "attn.o")).module == "bert.encoder.layer.1.attention.output.dense"
    assert bert.head_params > 0 and bert.head_prefixes == ("classifier",)
    llama = describe(tiny_model("tiny-llama"))
    assert llama.spec(Site("dec", 0, "ffn.gate")).module == "model.layers.0.mlp.gate_proj"
    assert llama.spec(Site("dec", -1, "ln.final")).module == "model.norm"


def test_unsupported_family_names_the_supported_ones(tmp_path):
    from transformers import GPT2Config

    GPT2Config().save_pretrained(tmp_path)
    with pytest.raises(UnsupportedBackbone, match="unsupported backbone model type 'gpt2'; supported families: t5"):
        load_config(str(tmp_path))
    with pytest.raises(UnsupportedBackbone, match="llama: llama, mistral, qwen2"):
        family_of(GPT2Config())


def test_missing_config_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="has no config.json"):
        load_config(str(tmp_path))


@pytest.mark.parametrize("backbone", TINY_BACKBONES)
@pytest.mark.parametrize("space_name", SPACES.names())
def test_space_contract(backbone, space_name):
    """Every registered space on every family: counting, sampling, encodings, Tune domains."""
    model = tiny_model(backbone)
    sites = describe(model)
    space = build_space(space_name, sites, backbone_name=backbone)
    dims = space.dims()
    assert dims and len({d.key for d in dims}) == len(dims)
    assert all("/" not in d.key for d in dims)
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.sample(rng)
        space.validate(arch)
        assert space.decode(space.encode(arch)) == arch
        assert space.from_tune({d.key: c for d, c in zip(dims, space.to_choices(arch))}) == arch
    budget = space.full_size() // 5
    for seed in range(5):
        arch = space.sample(seed, budget=budget)
        assert 0 < space.param_count(arch) <= budget
        assert arch == space.sample(seed, budget=budget)  # deterministic per seed
    assert set(space.to_tune()) == {d.key for d in dims}
    full = space.full()
    assert len(full) == len(dims)
    # analytic count == materialised count, on a real model
    apply_architecture(model, full)
    assert trainable_parameters(model) == space.param_count(full) == space.full_size()
    module, params = space.smallest_module()
    i = [d.key for d in dims].index(module.key)
    assert params == space.count_at(i, module.choices[1]) == min(space.choice_params(j)[1] for j in range(len(dims)))
    assert params == space.param_count(space.from_choices([module.choices[1] if j == i else 0 for j in range(len(dims))]))


def test_space_bad_input():
    sites = describe(tiny_model("tiny-bert"))
    with pytest.raises(ValueError, match="unknown space 's3'"):
        build_space("s3", sites)
    with pytest.raises(ValueError, match="positive integers"):
        build_space("s2", sites, sizes=(0, 4))
    space = build_space("s2", sites)
    bad = Architecture("s2", "x", (Placement(Site("enc", 0, "attn.q"), "lora", 3),))
    with pytest.raises(ValueError, match="size 3 of enc.0.attn.q:lora is not a candidate; valid sizes: \\(1, 4, 8\\)"):
        space.validate(bad)
    with pytest.raises(ValueError, match="not a module of space 's2'"):
        space.validate(Architecture("s2", "x", (Placement(Site("enc", 0, "ffn"), "prefix", 4),)))
    with pytest.raises(ValueError, match="budget must be > 0"):
        space.sample(0, budget=0)
    with pytest.raises(ValueError, match="no site enc.9.attn.q"):
        sites.spec(Site("enc", 9, "attn.q"))

    class Empty(type(space)):
        def candidates(self):
            return []

    with pytest.raises(ValueError, match="space 's2' has no modules on this backbone"):
        Empty(sites).smallest_module()


@pytest.mark.parametrize("backbone", TINY_BACKBONES)
@pytest.mark.parametrize("method", [m for m in METHODS.names() if METHODS.get(m).kind == "manual"])
def test_manual_baselines_on_every_family(backbone, method):
    model = tiny_model(backbone)
    sites = describe(model)
    arch = get_method(method).architecture(sites, backbone)
    apply_architecture(model, arch)
    assert trainable_parameters(model) == count_params(sites, arch)


def test_meta_build_counts_without_weights():
    config = load_config("tiny-t5")
    model = build(config, device="meta")
    assert next(model.parameters()).is_meta
    assert describe(model).backbone_params == describe(tiny_model("tiny-t5")).backbone_params
