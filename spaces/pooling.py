"""Mean pooling for a BERT-like classifier, inside the model itself.

A sentence-transformers checkpoint (all-MiniLM-L6-v2) was trained to be read by the mean of its
last hidden states over the attention mask (its ``modules.json`` says so); its ``[CLS]`` pooler was
never trained with it. :func:`use_mean_pooling` swaps the model's pooler for that mean, so that the
model's own ``forward`` (``model(**batch).logits``, and its loss) reads the mean: the suite's task
head and a user's code that loads an exported model compute the same logits.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedMeanPooler(nn.Module):
    """The mean of the hidden states over the tokens the attention mask keeps (set per forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return hidden_states.mean(1)
        mask = self.mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * mask).sum(1) / mask.sum(1).clamp_min(1)


def _remember_mask(pooler: MaskedMeanPooler):
    def hook(module, args, kwargs):
        pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    return hook


def use_mean_pooling(model: nn.Module) -> nn.Module:
    """Replace the pooler of a BERT-like ``model`` (``model.base_model.pooler``) by the masked mean of
    its last hidden states; returns ``model``. A clear error for a model without such a pooler."""
    base = getattr(model, "base_model", model)
    if getattr(base, "pooler", None) is None:
        raise ValueError(f"mean pooling replaces a BERT-style pooler, and {type(model).__name__} has none: "
                         "use pooling 'cls'")
    if isinstance(base.pooler, MaskedMeanPooler):
        return model
    pooler = MaskedMeanPooler()
    base.pooler = pooler
    base.register_forward_pre_hook(_remember_mask(pooler), with_kwargs=True)
    return model
