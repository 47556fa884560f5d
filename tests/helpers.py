"""Tiny models and inputs shared by the tests."""

from __future__ import annotations

import torch

from suite.backbones import build, tiny_config

TINY_BACKBONES_FOR_OPS = ("tiny-t5", "tiny-t5-gated", "tiny-bert", "tiny-llama")


def tiny_model(name: str, seed: int = 0, num_labels: int = 2):
    torch.manual_seed(seed)
    model = build(tiny_config(name), num_labels=num_labels)
    model.eval()
    return model


def tiny_inputs(name: str, batch: int = 2, length: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # some padding
    inputs = {"input_ids": ids, "attention_mask": mask}
    if name.startswith("tiny-t5"):
        inputs["decoder_input_ids"] = torch.randint(1000, 2000, (batch, 3), generator=g)
    return inputs


def output_tensor(model, inputs) -> torch.Tensor:
    return model(**inputs).logits
