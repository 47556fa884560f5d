"""One search's moving parts, shared by BIPEFT and its ablations.

:class:`SearchSession` builds the supernet from the context, the architecture weights, the ΔW trainer
(AdamW + linear decay over the planned steps, ``methods.training.WeightTrainer``), the Adam
optimiser of the architecture weights, the endless batch streams and the trace; it runs the two
kinds of update a loop is made of (:meth:`weight_step`, :meth:`arch_step`) and exports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from core.batches import cycle
from core.trace import Trace, TracePlot
from methods.base import SearchContext
from methods.bipeft.budget import BudgetFit, fit_budget
from methods.bipeft.config import SearchConfig
from methods.bipeft.gumbel import temperature
from methods.training import WeightTrainer, build_supernet, loss_and_value
from spaces.architecture import Architecture


class SearchSession:
    """The supernet, optimisers, batch streams and trace of one search.

    Args:
        ctx: the search context.
        config: the variant's config.
        weights: a factory ``(net, num_sizes, init_std, generator) -> nn.Module`` of architecture weights.
    """

    def __init__(self, ctx: SearchContext, config: SearchConfig, weights: Callable[..., nn.Module]):
        self.ctx, self.config, self.space = ctx, config, ctx.space
        self.task_model, self.net = build_supernet(ctx)
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.arch = weights(self.net, len(self.space.sizes), config.arch_init_std, self.generator)
        self.steps_per_epoch = ctx.steps_per_epoch
        self.total = ctx.total_steps
        self.anneal_steps = self.total  # the linear temperature reaches its end here (BIPEFT: sooner)
        self.trainer = WeightTrainer(self.net.weights() + list(self.task_model.head_parameters()), ctx,
                                     self.total, config.weight_decay, config.grad_clip)
        self.arch_optimizer = torch.optim.Adam(self.arch.parameters(), lr=config.arch_lr,
                                               betas=tuple(config.arch_betas), weight_decay=config.arch_weight_decay)
        self.weight_batches, self.arch_batches = cycle(ctx.weight_train), cycle(ctx.arch_train)
        self.trace = Trace(ctx.report, config.report_every)
        self.started = time.perf_counter()
        self._active: tuple[int, int] | None = None

    # ---- schedule --------------------------------------------------------------------------------
    def temperature(self, step: int) -> float:
        cfg = self.config
        planned = self.anneal_steps if cfg.temperature_schedule == "linear" else self.total
        return temperature(step, planned, self.steps_per_epoch, cfg.temperature_start, cfg.temperature_end,
                           cfg.temperature_schedule)

    def epoch(self, step: int) -> float:
        """Epochs over the weight-train half done after ``step + 1`` steps."""
        return (step + 1) / max(1, self.steps_per_epoch)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    # ---- updates ---------------------------------------------------------------------------------
    def weight_step(self, on_grads: Callable[[], None] | None = None) -> float:
        """ΔW on the next weight-train batch, under the gates set last; returns the loss."""
        return self.trainer.train_on(self.task_model, next(self.weight_batches), on_grads)

    def next_arch_batch(self) -> dict:
        return next(self.arch_batches)

    def arch_step(self, batch: dict, targets: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] = (),
                  regulariser: float = 0.0) -> float:
        """One first-order DARTS step of the architecture weights ``targets`` on ``batch``.

        The backward pass computes gradients only for ``targets`` and for the PEFT ``weights``
        asked for (whose gradients a method may read, e.g. BIPEFT's ``G(D_val)``); the task head
        and everything else are left alone. Adam then steps the architecture weights that got a
        gradient. ``regulariser`` adds ``regulariser * arch.regulariser()`` to the loss (the
        authors' ``arch_reg``). Returns the task loss.
        """
        loss, value = loss_and_value(self.task_model, batch, self.ctx)  # the step's one sync
        objective = loss + regulariser * self.arch.regulariser() if regulariser else loss
        self.arch_optimizer.zero_grad(set_to_none=True)
        self.trainer.optimizer.zero_grad(set_to_none=True)
        if objective.requires_grad:  # nothing is gated by a target when every module is gone
            objective.backward(inputs=[*targets, *weights])
            self.arch_optimizer.step()
        return value

    # ---- bookkeeping -----------------------------------------------------------------------------
    def active_params(self) -> int:
        """PEFT parameters the supernet trains now (live modules; fixed ones at their size).

        Cached: call :meth:`modules_changed` after removing modules or fixing sizes.
        """
        if self._active is None:
            self._active = self._count_active()
        return self._active[1]

    def active_modules(self) -> int:
        """Modules still in the supernet (cached like :meth:`active_params`)."""
        if self._active is None:
            self._active = self._count_active()
        return self._active[0]

    def modules_changed(self) -> None:
        self._active = None

    def _count_active(self) -> tuple[int, int]:
        modules = params = 0
        for i, op in enumerate(self.net.modules):
            if op.removed:
                continue
            modules += 1
            if op.sized and op.size_fixed:
                params += self.space.count_at(i, op.active_size)
            else:
                params += self.space.choice_params(i)[-1]
        return modules, params

    def export(self, fit_choices: list[int], preferred: list[int], importance: list[float],
               ) -> tuple[Architecture, BudgetFit]:
        """The architecture of ``fit_choices`` made to fit ``floor * B <= params <= B``."""
        fit = fit_budget(self.space, fit_choices, preferred, importance, self.ctx.budget, self.config.budget_floor)
        return self.space.from_choices(fit.choices), fit

    def save_trace(self, stem: str) -> dict[str, str]:
        """The trace CSV and a plot of the trained and expected parameters against the budget."""
        plot = TracePlot(("active_params", "expected_params"), ("active parameters", "expected parameters $E_t$"),
                         budget=self.ctx.budget, marks="triggered")
        return self.trace.save(self.ctx.out_dir, stem, plot)

    def lr(self) -> float:
        return self.trainer.lr


def fit_summary(space, fit: BudgetFit, before: int) -> dict:
    """What the budget fit changed, by module key, for the search info."""
    keys = [d.key for d in space.dims()]
    return {"params_before": before, "params": fit.params, "dropped": [keys[i] for i in fit.dropped],
            "added": [keys[i] for i in fit.added], "grown": [keys[i] for i in fit.grown]}
