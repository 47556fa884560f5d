"""The Architecture artifact: JSON round trip, strict loading, digest, apply_architecture."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import output_tensor, tiny_inputs, tiny_model

from methods import get_method
from spaces.architecture import Architecture, Placement, Site
from spaces.inject import apply_architecture, trainable_parameters
from spaces.sites import describe
from spaces.space import count_params


def sample_arch() -> Architecture:
    return Architecture(
        "s2", "tiny-bert",
        (Placement(Site("enc", 1, "attn.q"), "lora", 4), Placement(Site("enc", 0, "ln.ffn"), "lnfit"),
         Placement(Site("enc", 0, "ffn"), "adapter_lr", 8)),
    )


def test_site_string_round_trip():
    for site in (Site("enc", 3, "attn.q"), Site("dec", -1, "ln.final"), Site("dec", 0, "ln.cross")):
        assert Site.parse(str(site)) == site
    assert str(Site("dec", -1, "lm_head")) == "dec.lm_head"


def test_json_round_trip_and_digest(tmp_path):
    arch = sample_arch()
    again = Architecture.from_json(arch.to_json())
    assert again == arch and again.digest() == arch.digest()
    path = tmp_path / "a.json"
    arch.save(path)
    assert Architecture.load(path) == arch
    # placements are sorted, so the order they were given in does not change the digest
    shuffled = Architecture("s2", "other-backbone", tuple(reversed(arch.placements)))
    assert shuffled.digest() == arch.digest()
    assert Architecture("s2", "x", arch.placements[:2]).digest() != arch.digest()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(extra=1), "unknown architecture keys \\['extra'\\]; valid keys"),
    (lambda d: d["placements"][0].update(rank=4), "unknown keys \\['rank'\\]; valid keys: site, op, size"),
    (lambda d: d["placements"][0].update(op="loraa"), "unknown op 'loraa' .*valid ops: adapter_lr"),
    (lambda d: d["placements"][0].update(site="mid.1.attn.q"), "unknown stack 'mid'; valid stacks: enc, dec"),
    (lambda d: d["placements"][0].update(size=0), "positive integer size"),
    (lambda d: d["placements"][1].update(size=4), "has no size"),
    (lambda d: d.pop("space"), "missing the key 'space'"),
    (lambda d: d.update(op_options={"lora": {"scaling": 2.0}}), "'op_options' is not part of an architecture"),
])
def test_strict_loading(mutate, message):
    data = json.loads(sample_arch().to_json())
    data["placements"].sort(key=lambda p: p["op"] != "lora")  # lora first, lnfit second
    data["placements"].sort(key=lambda p: {"lora": 0, "lnfit": 1}.get(p["op"], 2))
    mutate(data)
    with pytest.raises(ValueError, match=message):
        Architecture.from_dict(data)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(placements={"site": "enc.0.attn.q"}), "placements must be a list of placements"),
    (lambda d: d.update(placements="enc.0.attn.q:lora"), "placements must be a list of placements"),
    (lambda d: d["placements"].__setitem__(1, ["enc.0.ln.ffn", "lnfit"]),
     "placement 1 must be an object with 'site', 'op' and 'size', got [\"enc.0.ln.ffn\", \"lnfit\"]"),
    (lambda d: d["placements"][0].update(site=3), "placement 0: 'site' must be a string such as 'enc.3.attn.q', got 3"),
    (lambda d: d["placements"][0].update(op=["lora"]), "placement 0: 'op' must be a string such as 'lora', got [\"lora\"]"),
    (lambda d: d["placements"][0].update(size="4"), "placement 0: 'size' must be an integer or null, got \"4\""),
    (lambda d: d["placements"][0].update(size=4.0), "placement 0: 'size' must be an integer or null, got 4.0"),
    (lambda d: d["placements"][0].update(size=True), "placement 0: 'size' must be an integer or null, got true"),
    (lambda d: d.update(space=2), "space must be a string, got 2"),
    (lambda d: d.update(full_finetune="no"), "full_finetune must be true or false, got \"no\""),
])
def test_a_field_of_the_wrong_type_is_named(mutate, message):
    data = json.loads(sample_arch().to_json())
    data["placements"].sort(key=lambda p: {"lora": 0, "lnfit": 1}.get(p["op"], 2))
    mutate(data)
    with pytest.raises(ValueError) as info:
        Architecture.from_dict(data)
    assert str(info.value).startswith(message), str(info.value)


def test_duplicate_placement_is_an_error():
    p = Placement(Site("enc", 0, "attn.q"), "lora", 4)
    with pytest.raises(ValueError, match="twice"):
        Architecture("s2", "x", (p, Placement(p.site, "lora", 8)))


def test_apply_architecture_in_user_code():
    """A user trains a found architecture in their own loop: only the injected ops learn."""
    model = tiny_model("tiny-bert")
    arch = sample_arch()
    apply_architecture(model, arch)
    assert trainable_parameters(model) == count_params(describe(model), arch)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    for _ in range(3):
        opt.zero_grad()
        output_tensor(model, tiny_inputs("tiny-bert")).pow(2).mean().backward()
        opt.step()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(frozen[n], p), n


def test_full_finetune_unfreezes_everything():
    model = tiny_model("tiny-llama")
    arch = get_method("full").architecture(describe(model), "tiny-llama")
    apply_architecture(model, arch)
    assert trainable_parameters(model) == count_params(describe(model), arch) == describe(model).backbone_params
