"""The manual PEFT baselines of the paper's Table 1, as fixed architectures on any supported family.

They follow S3Delta's ``structure_config/*.json`` (which BIPEFT copies), so that on T5-large with
a 32,100 vocabulary they reproduce the paper's ratios exactly (methods.md §6):

========  =======================================================================  ==================
name      placement                                                                T5-large params
========  =======================================================================  ==================
lora      LoRA r=8 on self-attention q and v of every layer                       1,572,864 (21.32‱)
adapter   serial bottleneck-24 adapter after the self-attention and FFN sub-layers  4,819,200 (65.33‱)
bitfit    a bias on self-attention q,k,v,o, the FFN linears, every norm, lm_head    599,396 (8.13‱)
lnfit     a parallel scale on every norm (final norms included)                     124,928 (1.69‱)
full      every backbone parameter                                                  737,639,424
========  =======================================================================  ==================

They are retrained with the suite's recipe like every architecture; their authors' settings (LoRA's
scaling 2 = alpha 16 / r 8) are their ``authors_recipe`` (``--retrain-recipe authors``).
"""

from __future__ import annotations

from methods.base import ManualMethod
from spaces.architecture import Architecture, Placement
from spaces.sites import LINEARS, BackboneSites


def _arch(backbone: str, placements, **kwargs) -> Architecture:
    """A baseline's fixed architecture on ``backbone``; its space is ``"manual"`` (designed, not searched)."""
    return Architecture("manual", backbone, tuple(placements), **kwargs)


class LoRABaseline(ManualMethod):
    name = "lora"
    label = "LoRA(r=8)"
    paper = "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022"

    def architecture(self, sites: BackboneSites, backbone_name: str = "") -> Architecture:
        placements = [Placement(s.site, "lora", 8) for s in sites.sites("linear", ("attn.q", "attn.v"))]
        return _arch(backbone_name, placements)

    def authors_recipe(self) -> dict[str, dict]:
        return {"lora": {"scaling": 2.0}}  # LoraConfig(r=8, alpha=16) in S3Delta's lora.json


class AdapterBaseline(ManualMethod):
    name = "adapter"
    label = "Adapter"
    paper = "Houlsby et al., Parameter-Efficient Transfer Learning for NLP, ICML 2019"

    def architecture(self, sites: BackboneSites, backbone_name: str = "") -> Architecture:
        placements = [Placement(s.site, "adapter_serial", 24) for s in sites.sites("sublayer", ("attn", "ffn"))]
        return _arch(backbone_name, placements)


class BitFitBaseline(ManualMethod):
    name = "bitfit"
    label = "BitFit"
    paper = "Ben Zaken et al., BitFit: Simple Parameter-efficient Fine-tuning, ACL 2022"

    def architecture(self, sites: BackboneSites, backbone_name: str = "") -> Architecture:
        specs = sites.sites("linear", LINEARS) + sites.sites("norm") + sites.sites("head")
        return _arch(backbone_name, [Placement(s.site, "bitfit") for s in specs])


class LNFitBaseline(ManualMethod):
    name = "lnfit"
    label = "LNFit"
    paper = "LN tuning as in Hu et al., Sparse Structure Search for Delta Tuning, NeurIPS 2022"

    def architecture(self, sites: BackboneSites, backbone_name: str = "") -> Architecture:
        return _arch(backbone_name, [Placement(s.site, "lnfit") for s in sites.sites("norm")])


class FullFineTuning(ManualMethod):
    name = "full"
    label = "Fine-tune"
    paper = "full fine-tuning of every backbone parameter"

    def architecture(self, sites: BackboneSites, backbone_name: str = "") -> Architecture:
        return _arch(backbone_name, [], full_finetune=True)
