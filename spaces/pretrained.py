"""Load a found PEFT model for use in your own code: the backbone, the ops, the trained weights.

An exported folder (``python -m suite export --format suite``) holds ``config.json`` (the backbone,
the architecture, the op settings of the recipe it was trained with, the task head's labels and
pooling, the record's metrics) and ``weights.safetensors`` (the trained PEFT and head weights):

    from spaces.pretrained import load_pretrained
    model = load_pretrained("sentence-transformers/all-MiniLM-L6-v2", "exported/")  # or a local path
    logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits

Nothing here needs the suite: transformers, safetensors and this package's ops.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.artifacts import WEIGHTS_FILE
from spaces.architecture import Architecture

CONFIG_FILE = "config.json"
FORMAT = "autopeft-suite"


class ArtifactError(ValueError):
    """An exported folder that cannot be loaded; the message says which file and why."""


def read_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of an exported folder (a clear error if it is missing or not one)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder} is not an exported model: it has no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is not valid JSON ({e})") from None
    if config.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not an {FORMAT} export (format {config.get('format')!r})")
    return config


def read_weights(folder: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """The tensors of ``weights.safetensors``; a clear error if the file is missing, corrupted or not
    the one ``sha256`` names."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} is missing")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactError(f"{path} is corrupted: its sha256 is not the {sha256[:12]}... the export recorded")
    try:
        return load(data)
    except SafetensorError as e:
        raise ArtifactError(f"{path} is not a readable safetensors file ({e})") from None


def backbone_model(name: str, config: dict[str, Any]) -> nn.Module:
    """The pretrained backbone of an export, with its task head's shape (a hub id or a local path)."""
    from transformers import AutoConfig

    from spaces.sites import family_of, model_class

    hf_config = AutoConfig.from_pretrained(name)
    family = family_of(hf_config)
    if family == "bert":
        hf_config.num_labels = config["num_labels"]
        hf_config.problem_type = "regression" if config["num_labels"] == 1 else "single_label_classification"
    return model_class(family).from_pretrained(name, config=hf_config)


def load_pretrained(backbone: str | nn.Module, folder: str | Path) -> nn.Module:
    """The backbone with the export's ops injected and its trained weights loaded, in eval mode.

    Args:
        backbone: a hub id or local path of the backbone the model was trained on, or that model
            already loaded (e.g. a tiny random model rebuilt with the same seed).
        folder: the exported folder.

    Raises:
        ArtifactError: a missing, corrupted or mismatched file (the weights do not fit the ops).
    """
    from spaces.inject import apply_architecture
    from spaces.pooling import use_mean_pooling

    config = read_config(folder)
    weights = read_weights(folder, config.get("weights_sha256"))
    model = backbone if isinstance(backbone, nn.Module) else backbone_model(backbone, config)
    if config.get("pooling") == "mean":
        use_mean_pooling(model)
    apply_architecture(model, Architecture.from_dict(config["architecture"]), config.get("op_options") or {})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    params = dict(model.named_parameters())
    missing, unexpected = sorted(trainable - set(weights)), sorted(set(weights) - set(params))
    if missing or unexpected:
        raise ArtifactError(f"the weights in {folder} do not fit this backbone and architecture: "
                            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                            f"(e.g. {unexpected[:2]})")
    for name, tensor in weights.items():
        if params[name].shape != tensor.shape:
            raise ArtifactError(f"{name}: shape {tuple(tensor.shape)} in {folder}, {tuple(params[name].shape)} "
                                "in the model")
        with torch.no_grad():  # an in-place copy that bumps the version (a cached bf16 cast sees the change)
            params[name].copy_(tensor)
    return model.eval()
