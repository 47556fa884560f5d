"""Second-order DARTS for S3Delta: the unrolled architecture gradient (``architect.py:62-240``).

    grad_alpha = d_alpha L_val(w', alpha) - xi * (d_alpha L_trn(w+, alpha) - d_alpha L_trn(w-, alpha)) / (2 eps)

with ``w' = AdamW_step(w, d_w L_trn(w, alpha))`` (a *virtual* step: the optimiser state is read,
not changed), ``xi`` the current weight learning rate, ``w+- = w +- eps * d_w' L_val(w', alpha)`` and
``eps = 0.01 / ||d_w' L_val||`` (a central finite difference for the Hessian-vector product).

Memory: the authors build a second full T5-large (``v_model``) for ``w'``. Here ``w'`` is written
into the one model in place and the trainable weights are restored from a backup afterwards, so
the frozen backbone is never copied. The extra memory is a few copies of the *trainable* weights
(the backup, ``w'``, the two Adam moments of the virtual step while it runs, and the gradients
``d_w L_trn`` and ``d_w' L_val``: about 5x the PEFT weights plus their task head) on top of the
first-order step, and every loss's activations are freed before the next one is built. It costs
four forward/backward passes per step (against one for first order).

Precision: all four passes run at the run's precision. The finite difference is the part bf16 moves
most: against fp32 on the same weights and batches, 6.9 % (relative L2 error; 1.6 % with its two
perturbed passes in fp32), where another weight-train batch in fp32 moves it by 71 %; and ``xi``
times it is 0.1 % of ``d_alpha L_val``, so the whole gradient moves by 1.2 % with or without fp32
perturbed passes (another batch: 3.8 %) (all-MiniLM-L6-v2, S2, demo/rotten_tomatoes, batch 16 x 64 tokens, after 40 fp32 steps, mean of 3 batches; ``python bench/precision_statistics.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn


class UnrolledParts(NamedTuple):
    """``d_alpha L_val(w', alpha)``, ``d_alpha L_trn(w+-, alpha)`` and the perturbation ``eps``."""

    d_alpha: torch.Tensor
    d_pos: torch.Tensor
    d_neg: torch.Tensor
    eps: float

    @property
    def hessian(self) -> torch.Tensor:
        """The finite-difference Hessian-vector product ``(d_pos - d_neg) / (2 eps)``."""
        return (self.d_pos - self.d_neg) / (2 * self.eps)


@torch.no_grad()
def adamw_virtual_step(optimizer: torch.optim.AdamW, params: list[nn.Parameter],
                       grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """The weights after one AdamW step with ``grads``, as new tensors; params and state stay as they are.

    Same update as ``torch.optim.AdamW`` (no amsgrad): decoupled weight decay, bias-corrected
    moments. A parameter whose gradient is ``None`` keeps its value.
    """
    group = optimizer.param_groups[0]
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    if group.get("amsgrad") or group.get("maximize"):
        raise ValueError("the virtual step implements plain AdamW (amsgrad=False, maximize=False)")
    out = []
    for p, g in zip(params, grads):
        if g is None:
            out.append(p.detach().clone())
            continue
        state = optimizer.state.get(p, {})
        step = float(state["step"]) + 1 if "step" in state else 1.0
        m = state["exp_avg"] * beta1 + g * (1 - beta1) if "exp_avg" in state else g * (1 - beta1)
        v = state["exp_avg_sq"] * beta2 + g * g * (1 - beta2) if "exp_avg_sq" in state else g * g * (1 - beta2)
        denom = (v / (1 - beta2**step)).sqrt_().add_(eps)
        out.append(p.detach() * (1 - lr * wd) - (lr / (1 - beta1**step)) * m / denom)
    return out


def unrolled_arch_grad(alpha: nn.Parameter, weights: list[nn.Parameter], optimizer: torch.optim.AdamW,
                       train_loss: Callable[[], torch.Tensor], val_loss: Callable[[], torch.Tensor]
                       ) -> torch.Tensor:
    """The second-order gradient of the validation loss with respect to ``alpha``.

    Args:
        alpha: the architecture weights.
        weights: the trainable weights (the PEFT weights and a task head), as in ``optimizer``.
        optimizer: the weights' AdamW (its lr is ``xi``; its state drives the virtual step).
        train_loss: builds the weight-train loss at the current weights and gates (the gates are
            recomputed from ``alpha`` inside, with this step's fixed noise and shift).
        val_loss: builds the arch-train ("validation") loss likewise (plus any alpha penalty).

    Returns:
        The gradient, shaped like ``alpha``. Weights are restored exactly on return.
    """
    xi = optimizer.param_groups[0]["lr"]
    parts = unrolled_parts(alpha, weights, optimizer, train_loss, val_loss)
    return parts.d_alpha - xi * (parts.d_pos - parts.d_neg) / (2 * parts.eps)


def unrolled_parts(alpha: nn.Parameter, weights: list[nn.Parameter], optimizer: torch.optim.AdamW,
                   train_loss: Callable[[], torch.Tensor], val_loss: Callable[[], torch.Tensor]) -> UnrolledParts:
    """The terms of :func:`unrolled_arch_grad` apart (``bench/precision_statistics.py`` measures each
    under bf16 autocast). ``train_loss`` is built three times: at ``w``, then at ``w+`` and ``w-``."""
    grads = torch.autograd.grad(train_loss(), weights, allow_unused=True)
    virtual = adamw_virtual_step(optimizer, weights, list(grads))
    del grads
    backup = [w.detach().clone() for w in weights]
    try:
        _assign(weights, virtual)
        del virtual
        out = torch.autograd.grad(val_loss(), [alpha, *weights], allow_unused=True)
        d_alpha, d_w = out[0], out[1:]
        d_alpha = torch.zeros_like(alpha) if d_alpha is None else d_alpha
        live = [(w, b, d) for w, b, d in zip(weights, backup, d_w) if d is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(d) for _, _, d in live])) if live else 0.0
        eps = 0.01 / (float(norm) + 1e-6)
        d_pm = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, b, d in live:
                    w.copy_(b).add_(d, alpha=sign * eps)
            d_pm.append(_alpha_grad(train_loss(), alpha))
    finally:
        _assign(weights, backup)
    return UnrolledParts(d_alpha, d_pm[0], d_pm[1], eps)


def _alpha_grad(loss: torch.Tensor, alpha: nn.Parameter) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, [alpha], allow_unused=True)
    return torch.zeros_like(alpha) if g is None else g


@torch.no_grad()
def _assign(weights: list[nn.Parameter], values: list[torch.Tensor]) -> None:
    for w, v in zip(weights, values):
        w.copy_(v)
