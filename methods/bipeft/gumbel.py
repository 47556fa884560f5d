"""Gumbel-softmax sampling of the architecture weights, and the temperature schedule.

The paper normalises Θ and Φ with the Gumbel-softmax (§3.5, following GDAS / DATA); the authors'
code uses ``F.gumbel_softmax(logits, tau, hard=True)``: a one-hot sample in the forward pass with
the soft sample's gradient (straight-through). The noise here comes from a seeded CPU generator,
so a search is reproducible whatever else draws random numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise ``-log(E)``, ``E ~ Exp(1)`` (as ``F.gumbel_softmax`` draws it), on the CPU."""
    return -torch.empty(shape, dtype=torch.float32).exponential_(generator=generator).log()


def gumbel_softmax_st(logits: torch.Tensor, temperature: float, generator: torch.Generator,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
    """A hard one-hot Gumbel-softmax sample with straight-through gradients.

    Forward: ``one_hot(argmax(logits + g))``. Backward: the gradient of the soft sample
    ``softmax((logits + g) / temperature)``.

    Args:
        logits: ``[..., C]`` unnormalised log-probabilities (``-inf`` marks an impossible choice).
        temperature: the softmax temperature (only the gradient depends on it).
        generator: the CPU generator of the noise.
        noise: the Gumbel noise to use instead of drawing it (tests).
    """
    g = gumbel_noise(logits.shape, generator) if noise is None else noise
    y_soft = ((logits + g.to(logits.device, logits.dtype)) / temperature).softmax(-1)
    y_hard = F.one_hot(y_soft.argmax(-1), logits.shape[-1]).to(y_soft.dtype)
    return y_hard - y_soft.detach() + y_soft


def gumbel_argmax(logits: torch.Tensor, generator: torch.Generator, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The index of a hard Gumbel sample, without gradient (the temperature does not change it).

    With ``noise`` (a draw of :func:`gumbel_noise`) it is the forward one-hot of
    ``gumbel_softmax_st(logits, t, generator, noise)``: one draw, read with or without gradient."""
    g = gumbel_noise(logits.shape, generator) if noise is None else noise
    return (logits.detach().float().cpu() + g).argmax(-1)


def temperature(step: int, total_steps: int, steps_per_epoch: int, start: float, end: float,
                schedule: str) -> float:
    """The Gumbel temperature at ``step`` (0-based) of a search planned for ``total_steps``.

    ``linear`` goes from ``start`` at step 0 to ``end`` at the last planned step. ``epoch`` is the
    authors' schedule, ``start - (start - end) * epoch / epochs``: constant within an epoch, so it
    ends at ``start - (start - end) * (epochs - 1) / epochs``, never reaching ``end``.
    """
    if schedule == "constant":
        return start
    if schedule == "linear":
        frac = step / max(1, total_steps - 1)
    elif schedule == "epoch":
        epochs = max(1, math.ceil(total_steps / max(1, steps_per_epoch)))
        frac = (step // max(1, steps_per_epoch)) / epochs
    else:
        raise ValueError(f"unknown temperature schedule {schedule!r}; valid: linear, epoch, constant")
    return start + (end - start) * min(1.0, frac)
