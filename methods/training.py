"""Training pieces shared by the one-shot methods (BIPEFT, S3Delta, PrunePEFT): their supernet and its ΔW step.

(The supernet itself, every module of a space injected in search mode, is
:class:`spaces.inject.Supernet`; this module trains one.)

* :func:`build_supernet`: a fresh task model from the context with every module of the space
  injected in search mode (a :class:`~spaces.inject.Supernet`) with the context's op settings (the
  retrain recipe's), the task head trainable.
* :class:`WeightTrainer`: the ΔW step of first-order DARTS on a weight-train batch: the suite's one
  training step (:class:`core.training.Trainer`: AdamW with linear decay, paper App. B, gradient
  clipping, autocast, a non-finite-loss guard) with the context's lr and autocast.
* :func:`batch_loss`: the loss of a batch under the current gates (for the Θ/Φ/α steps, and the
  losses of S3Delta's unrolled gradient); :func:`loss_and_value` with its value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from core.batches import to_device
from core.training import Trainer, finite_loss
from methods.base import SearchContext, TaskModel
from spaces.inject import Supernet


def build_supernet(ctx: SearchContext) -> tuple[TaskModel, Supernet]:
    """A task model from ``ctx`` with the whole space injected in search mode (head trainable).

    The ops take ``ctx.op_options``, the run's retrain recipe: the one place that decides the op
    settings of every supernet, so a search never sees other ops than its retrain trains.
    """
    torch.manual_seed(ctx.seed)
    task_model = ctx.make_model()
    net = Supernet(task_model.model, ctx.space, ctx.op_options)
    for p in task_model.head_parameters():
        p.requires_grad_(True)
    task_model.train()
    return task_model, net


class WeightTrainer(Trainer):
    """The weight (ΔW) optimiser of a search: the suite's :class:`~core.training.Trainer` (AdamW +
    linear decay over ``total_steps``, clipping, autocast, the non-finite-loss guard) on the context's
    lr and autocast.

    Args:
        params: the supernet weights and the task head.
        ctx: the search context (lr, device, autocast).
        total_steps: the length of the linear decay.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (0: off).
    """

    def __init__(self, params: Iterable[nn.Parameter], ctx: SearchContext, total_steps: int,
                 weight_decay: float = 0.0, grad_clip: float = 1.0):
        super().__init__(params, ctx.lr, total_steps, weight_decay, grad_clip, autocast=ctx.autocast, what="search")
        self.ctx = ctx

    def train_on(self, task_model: TaskModel, batch: dict, on_grads: Callable[[], None] | None = None) -> float:
        """One ΔW update on ``batch`` (see :meth:`Trainer.step` for ``on_grads``); returns the loss."""
        return self.step(lambda: task_model(to_device(batch, self.ctx.device)), on_grads)


def batch_loss(task_model: TaskModel, batch: dict, ctx: SearchContext) -> torch.Tensor:
    """The task loss of a batch on ``ctx.device`` under autocast; raises on a non-finite loss."""
    return loss_and_value(task_model, batch, ctx)[0]


def loss_and_value(task_model: TaskModel, batch: dict, ctx: SearchContext) -> tuple[torch.Tensor, float]:
    """:func:`batch_loss` and its value, read once by the non-finite guard (before any backward pass:
    a caller that returns the value needs no second sync after its update)."""
    with ctx.autocast():
        loss = task_model(to_device(batch, ctx.device))
    return loss, finite_loss(loss, "search")
