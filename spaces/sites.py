"""Where PEFT ops can go: per model family, canonical sites -> backbone module names and shapes.

Canonical positions (the same names for every family, so that an architecture found on one
backbone reads the same on another):

==============  ===============================================================================
``attn.q/k/v/o``  self-attention projections (T5 ``q,k,v,o``; BERT ``query,key,value``,
                  ``attention.output.dense``; Llama ``q/k/v/o_proj``). Cross-attention
                  projections are never adapted (as in the BIPEFT and S3Delta code).
``ffn.gate``      the gate of a gated FFN (T5 v1.1 ``wi_0``, Llama ``gate_proj``)
``ffn.up``        the FFN input projection (T5 ``wi`` / ``wi_1``, BERT ``intermediate.dense``,
                  Llama ``up_proj``)
``ffn.down``      the FFN output projection (T5 ``wo``, BERT ``output.dense``, Llama ``down_proj``)
``attn``          the self-attention sub-layer output, before dropout and residual (hosts the
                  adapters after attention and the prefix)
``ffn``           the FFN sub-layer output, before dropout and residual (serial / parallel / LR
                  adapters after the FFN)
``ln.attn``       the norm of the self-attention sub-layer (pre-norm in T5/Llama, post in BERT)
``ln.cross``      the norm of the T5 decoder's cross-attention sub-layer
``ln.ffn``        the norm of the FFN sub-layer
``ln.final``      a stack's final norm (T5 encoder and decoder, Llama ``model.norm``); layer -1
``lm_head``       the output projection of T5 and Llama (only the BitFit baseline uses it)
==============  ===============================================================================

:func:`describe` reads the sites and their shapes off a model instance, which may live on the meta
device: counting a T5-large space needs only its ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from spaces.architecture import STACK_LEVEL, Site

# Every position of kind "linear": the self-attention projections and the FFN linears (see the table above).
LINEARS = ("attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down")

# model_type (from config.json) -> family
FAMILIES: dict[str, str] = {
    "t5": "t5",
    "mt5": "t5",
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
}
FAMILY_NAMES = {"t5": "T5 (v1.0 and v1.1)", "bert": "BERT-like (BERT, RoBERTa, MiniLM)", "llama": "Llama-like (Llama, Mistral, Qwen2)"}


class UnsupportedBackbone(ValueError):
    """The backbone's model type belongs to no supported family."""


def family_of(config) -> str:
    """The family (``t5``, ``bert``, ``llama``) of a transformers config; a clear error otherwise."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        supported = "; ".join(
            f"{fam}: {', '.join(t for t, f in FAMILIES.items() if f == fam)}" for fam in FAMILY_NAMES
        )
        raise UnsupportedBackbone(
            f"unsupported backbone model type {model_type!r}; supported families: {supported}"
        )
    return FAMILIES[model_type]


@dataclass(frozen=True)
class SiteSpec:
    """A site with everything an op needs to be built there.

    Args:
        site: the canonical site.
        kind: ``linear`` (a projection), ``norm`` (a layer norm), ``sublayer`` (a sub-layer output)
            or ``head`` (the lm_head).
        module: dotted path, from the model root, of the module whose output the ops modify.
        d_in, d_out: input and output widths at that module (for ``sublayer``: the hidden size).
        norm: ``layer`` or ``rms`` for norm sites.
        eps: the norm's epsilon.
        input_from, input_arg: where a ``sublayer`` site reads its input when the host module is
            not the one that receives it (BERT's FFN input is the second argument of ``output``).
        attention, q, o: for ``attn`` sub-layer sites, the self-attention module hosting a prefix,
            and the paths of its q and o projections relative to it (``o`` is ``None`` when the
            attention module returns its context before the output projection, as in BERT).
        n_heads, head_dim, attn_scale: attention geometry for the prefix.
    """

    site: Site
    kind: str
    module: str
    d_in: int
    d_out: int
    norm: str | None = None
    eps: float = 1e-6
    input_from: str | None = None
    input_arg: int = 0
    attention: str | None = None
    q: str | None = None
    o: str | None = None
    n_heads: int = 0
    head_dim: int = 0
    attn_scale: float = 1.0


@dataclass
class BackboneSites:
    """The sites of one backbone, its family and its parameter counts."""

    family: str
    specs: list[SiteSpec]
    backbone_params: int
    head_params: int = 0
    head_prefixes: tuple[str, ...] = ()
    by_site: dict[Site, SiteSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_site = {s.site: s for s in self.specs}

    def spec(self, site: Site) -> SiteSpec:
        try:
            return self.by_site[site]
        except KeyError:
            raise ValueError(f"the {self.family} backbone has no site {site}") from None

    def sites(self, kind: str | None = None, positions: tuple[str, ...] | None = None) -> list[SiteSpec]:
        return [
            s for s in self.specs
            if (kind is None or s.kind == kind) and (positions is None or s.site.position in positions)
        ]


def _linear(model: nn.Module, site: Site, path: str) -> SiteSpec:
    mod = model.get_submodule(path)
    return SiteSpec(site, "linear", path, mod.in_features, mod.out_features)


def _norm(model: nn.Module, site: Site, path: str) -> SiteSpec:
    mod = model.get_submodule(path)
    kind = "layer" if isinstance(mod, nn.LayerNorm) else "rms"
    eps = getattr(mod, "eps", None) or getattr(mod, "variance_epsilon", None) or 1e-6
    d = mod.weight.shape[0]
    return SiteSpec(site, "norm", path, d, d, norm=kind, eps=float(eps))


def _t5_sites(model: nn.Module) -> list[SiteSpec]:
    cfg = model.config
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    gated = bool(getattr(cfg, "is_gated_act", False))
    specs: list[SiteSpec] = []
    for stack, name in (("enc", "encoder"), ("dec", "decoder")):
        stack_mod = getattr(model, name, None)
        if stack_mod is None:
            continue
        for i, _ in enumerate(stack_mod.block):
            b = f"{name}.block.{i}"
            attn = f"{b}.layer.0.SelfAttention"
            ffn_idx = 2 if stack == "dec" else 1
            ffn = f"{b}.layer.{ffn_idx}.DenseReluDense"
            for pos, proj in zip(("attn.q", "attn.k", "attn.v", "attn.o"), "qkvo"):
                specs.append(_linear(model, Site(stack, i, pos), f"{attn}.{proj}"))
            if gated:
                specs.append(_linear(model, Site(stack, i, "ffn.gate"), f"{ffn}.wi_0"))
                specs.append(_linear(model, Site(stack, i, "ffn.up"), f"{ffn}.wi_1"))
            else:
                specs.append(_linear(model, Site(stack, i, "ffn.up"), f"{ffn}.wi"))
            specs.append(_linear(model, Site(stack, i, "ffn.down"), f"{ffn}.wo"))
            specs.append(SiteSpec(
                Site(stack, i, "attn"), "sublayer", attn, d, d, attention=attn, q="q", o="o",
                n_heads=cfg.num_heads, head_dim=cfg.d_kv, attn_scale=1.0,  # T5 does not scale q.k
            ))
            specs.append(SiteSpec(Site(stack, i, "ffn"), "sublayer", ffn, d, d))
            specs.append(_norm(model, Site(stack, i, "ln.attn"), f"{b}.layer.0.layer_norm"))
            if stack == "dec":
                specs.append(_norm(model, Site(stack, i, "ln.cross"), f"{b}.layer.1.layer_norm"))
            specs.append(_norm(model, Site(stack, i, "ln.ffn"), f"{b}.layer.{ffn_idx}.layer_norm"))
        specs.append(_norm(model, Site(stack, STACK_LEVEL, "ln.final"), f"{name}.final_layer_norm"))
    assert inner > 0
    if hasattr(model, "lm_head"):
        specs.append(SiteSpec(Site("dec", STACK_LEVEL, "lm_head"), "head", "lm_head",
                              model.lm_head.in_features, model.lm_head.out_features))
    return specs


def _bert_sites(model: nn.Module) -> list[SiteSpec]:
    cfg = model.config
    prefix = f"{model.base_model_prefix}." if model.base_model is not model else ""
    d, n_heads = cfg.hidden_size, cfg.num_attention_heads
    specs: list[SiteSpec] = []
    for i, _ in enumerate(model.base_model.encoder.layer):
        b = f"{prefix}encoder.layer.{i}"
        for pos, path in (
            ("attn.q", "attention.self.query"), ("attn.k", "attention.self.key"),
            ("attn.v", "attention.self.value"), ("attn.o", "attention.output.dense"),
            ("ffn.up", "intermediate.dense"), ("ffn.down", "output.dense"),
        ):
            specs.append(_linear(model, Site("enc", i, pos), f"{b}.{path}"))
        specs.append(SiteSpec(
            Site("enc", i, "attn"), "sublayer", f"{b}.attention.output.dense", d, d,
            attention=f"{b}.attention.self", q="query", o=None,
            n_heads=n_heads, head_dim=d // n_heads, attn_scale=(d // n_heads) ** -0.5,
        ))
        # BertOutput(hidden_states, input_tensor): the FFN's input arrives as its second argument.
        specs.append(SiteSpec(Site("enc", i, "ffn"), "sublayer", f"{b}.output.dense", d, d,
                              input_from=f"{b}.output", input_arg=1))
        specs.append(_norm(model, Site("enc", i, "ln.attn"), f"{b}.attention.output.LayerNorm"))
        specs.append(_norm(model, Site("enc", i, "ln.ffn"), f"{b}.output.LayerNorm"))
    return specs


def _llama_sites(model: nn.Module) -> list[SiteSpec]:
    cfg = model.config
    base = model.base_model
    prefix = f"{model.base_model_prefix}." if base is not model else ""
    d, n_heads = cfg.hidden_size, cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or d // n_heads
    specs: list[SiteSpec] = []
    for i, _ in enumerate(base.layers):
        b = f"{prefix}layers.{i}"
        for pos, path in (
            ("attn.q", "self_attn.q_proj"), ("attn.k", "self_attn.k_proj"),
            ("attn.v", "self_attn.v_proj"), ("attn.o", "self_attn.o_proj"),
            ("ffn.gate", "mlp.gate_proj"), ("ffn.up", "mlp.up_proj"), ("ffn.down", "mlp.down_proj"),
        ):
            specs.append(_linear(model, Site("dec", i, pos), f"{b}.{path}"))
        specs.append(SiteSpec(
            Site("dec", i, "attn"), "sublayer", f"{b}.self_attn", d, d, attention=f"{b}.self_attn",
            q="q_proj", o="o_proj", n_heads=n_heads, head_dim=head_dim, attn_scale=head_dim ** -0.5,
        ))
        specs.append(SiteSpec(Site("dec", i, "ffn"), "sublayer", f"{b}.mlp", d, d))
        specs.append(_norm(model, Site("dec", i, "ln.attn"), f"{b}.input_layernorm"))
        specs.append(_norm(model, Site("dec", i, "ln.ffn"), f"{b}.post_attention_layernorm"))
    specs.append(_norm(model, Site("dec", STACK_LEVEL, "ln.final"), f"{prefix}norm"))
    if hasattr(model, "lm_head"):
        specs.append(SiteSpec(Site("dec", STACK_LEVEL, "lm_head"), "head", "lm_head",
                              model.lm_head.in_features, model.lm_head.out_features))
    return specs


_ENUMERATORS = {"t5": _t5_sites, "bert": _bert_sites, "llama": _llama_sites}


def model_class(family: str):
    """The transformers class of a family's task model: T5 text-to-text, a BERT-like classifier (or
    regressor), a Llama-like causal LM scored on label tokens."""
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        T5ForConditionalGeneration,
    )

    return {"t5": T5ForConditionalGeneration, "bert": AutoModelForSequenceClassification,
            "llama": AutoModelForCausalLM}[family]


def head_prefixes(model: nn.Module, family: str) -> tuple[str, ...]:
    """Module paths of a task head that is not part of the pretrained backbone (BERT's classifier)."""
    if family != "bert" or model.base_model is model:
        return ()
    base = model.base_model_prefix
    return tuple(name for name, child in model.named_children()
                 if name != base and any(True for _ in child.parameters()))


def count_unique(params) -> int:
    """Count parameters once each, also when tied (T5's lm_head shares the embedding)."""
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def describe(model: nn.Module) -> BackboneSites:
    """The sites of ``model`` (a transformers model, real or on the meta device)."""
    family = family_of(model.config)
    heads = head_prefixes(model, family)
    head_params = count_unique(
        p for n, p in model.named_parameters(remove_duplicate=False) if n.split(".")[0] in heads
    )
    total = count_unique(model.parameters())
    return BackboneSites(family, _ENUMERATORS[family](model), total - head_params, head_params, heads)
