"""Training pieces shared by the one-shot methods (BIPEFT, S3Delta, PrunePEFT): their supernet and its ΔW step.

(The supernet itself, every module of a space injected in search mode, is
:class:`spaces.inject.Supernet`; this module trains one.)

* :func:`build_supernet`: a fresh task model from the context with every module of the space
  injected in search mode (a :class:`~spaces.inject.Supernet`), the task head trainable.
* :class:`WeightTrainer`: the ΔW step of first-order DARTS on a weight-train batch: AdamW with
  linear decay (paper App. B), gradient clipping, autocast, a non-finite-loss guard.
* :func:`batch_loss`: the loss of a batch under the current gates (for ΔW and Θ/Φ/α steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from core.batches import to_device
from core.schedules import linear_decay
from methods.base import SearchContext, TaskModel
from spaces.inject import Supernet


def build_supernet(ctx: SearchContext, op_kwargs: dict[str, dict] | None = None) -> tuple[TaskModel, Supernet]:
    """A task model from ``ctx`` with the whole space injected in search mode (head trainable)."""
    torch.manual_seed(ctx.seed)
    task_model = ctx.make_model()
    net = Supernet(task_model.model, ctx.space, op_kwargs)
    for p in task_model.head_parameters():
        p.requires_grad_(True)
    task_model.train()
    return task_model, net


class WeightTrainer:
    """The weight (ΔW) optimiser of a search: AdamW + linear decay over ``total_steps``.

    Args:
        params: the supernet weights and the task head.
        ctx: the search context (lr, device, autocast).
        total_steps: the length of the linear decay.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (0: off).
    """

    def __init__(self, params: Iterable[nn.Parameter], ctx: SearchContext, total_steps: int,
                 weight_decay: float = 0.0, grad_clip: float = 1.0):
        self.params = [p for p in params if p.requires_grad]
        self.ctx, self.grad_clip = ctx, grad_clip
        self.optimizer = torch.optim.AdamW(self.params, lr=ctx.lr, weight_decay=weight_decay)
        self.schedule = linear_decay(self.optimizer, total_steps)

    def step(self, task_model: TaskModel, batch: dict, on_grads: Callable[[], None] | None = None) -> float:
        """One ΔW update on ``batch``; returns the loss.

        ``on_grads``, if given, is called after the backward pass and before clipping and the
        update: a method reads the raw weight gradients there (BIPEFT's sensitivities) without a
        second backward pass.
        """
        loss = batch_loss(task_model, batch, self.ctx)
        value = loss.item()  # batch_loss has synced already: reading it now does not wait for the update
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:  # False when a sample gated every kept module off (and there is no head)
            loss.backward()
        if on_grads is not None:
            on_grads()
        live = [p for p in self.params if p.grad is not None]
        if self.grad_clip and live:
            torch.nn.utils.clip_grad_norm_(live, self.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return value


def batch_loss(task_model: TaskModel, batch: dict, ctx: SearchContext) -> torch.Tensor:
    """The task loss of a batch on ``ctx.device`` under autocast; raises on a non-finite loss."""
    with ctx.autocast():
        loss = task_model(to_device(batch, ctx.device))
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite search loss {loss.item()}")
    return loss
