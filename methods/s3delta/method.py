"""S3Delta: Hu et al., "Sparse Structure Search for Delta Tuning", NeurIPS 2022 (``thunlp/S3Delta``).

As BIPEFT's Table 1 uses it ("S3Delta-M", methods.md §2): one scalar architecture weight
``alpha_i`` per module of the space, with every sized module fixed at size 1 (LoRA rank 1, the
low-rank adapter at rank 1; S1's adapters and prefix at width / length 1). What it implements:

* **Shifted global sigmoid** (the paper's budget-constrained keep probability; ``s3delta.py:416-480``): ``p_i = sigmoid((alpha_i - b)/beta)``
  with the shift ``b`` solved at every step so that the expected size ``sum_i p_i n_i`` equals the
  budget ``B`` (:func:`~methods.s3delta.gates.solve_shift`: a safeguarded Newton root find,
  warm-started at the previous ``b``; ``b = -inf``, all ``p = 1``, when the whole space fits).
  ``shift_detach`` (on, as in the scripts): ``p <- p / sum(p) * stopgrad(sum(p))``.
* **Binary-concrete relaxation** at temperature 1, ``s = sigmoid(log(u p / ((1-u)(1-p))))``, gates
  ``z = clamp(s (r - l) + l, 0, 1)``: soft by default (the scripts), hard straight-through with
  ``hard_forward``. One noise draw ``u`` serves the architecture step (all four losses of a
  second-order step); the weight step draws again (``--sample_once_per_step``). Validation uses
  ``z = p`` (with ``hard_forward``: the greedy structure).
* **Bi-level optimisation** on the DARTS split: ``alpha`` on arch-train batches, the PEFT weights
  on weight-train batches, alpha first in each step (``trainer.py:198-262``). Second-order DARTS
  (the original unrolled step, :mod:`methods.s3delta.unrolled`) by default, as published and as
  behind the paper's search cost; ``darts='first_order'`` is a cheaper option whose rows the
  tables label.
  ``alpha`` (init 0): AdamW lr 0.1, no weight decay, linear decay, clip 2.0; weights: AdamW
  ``ctx.lr`` (3e-4), linear decay, clip 2.0.
* **Checkpoint selection**: the validation metric is computed every ``eval_every`` steps and the
  ``alpha`` of the best one (ties: the later) gives the structure, as ``best_search.ckpt`` does.
* **Precision**: every pass (the weight step and the four of the unrolled step) runs at the run's
  precision; ``alpha``, its optimiser state and the keep probabilities stay float64 (the gates the
  ops read, fp32). What bf16
  moves is measured in :mod:`methods.s3delta.unrolled` (the whole architecture gradient 1.2 %).
* **Progress**: the trace has a row per validation; between two, the step is reported every
  ``core.trace.PROGRESS_EVERY`` steps for the live view.
* **Final structure** (``sparse_structure_search.py:12-41``): modules sorted by ``p`` (equivalently by
  ``alpha``), each kept while it still fits in ``B`` (skip-and-continue), all at size 1. The harness
  retrains it from a fresh init.

Deviations from the paper and its code:

* The second-order step is implemented without the authors' second copy of the backbone (see
  :mod:`methods.s3delta.unrolled`); the first-order one is an option the authors' code lacks.
* The shift is solved for exactly ``B`` (the code solves for ``B (1 - 1e-7)``).
* Not implemented: the ``tau_theta`` strategy (a softmax with a solved temperature; off in every
  script), sparsity-decay schedules (commented out in the code), warm-up steps (0 in the scripts).
  The ``l0`` strategy (``p = sigmoid(alpha/beta)`` plus ``lambda0`` times the expected L0 norm,
  which needs a stretch ``l < 0``) is available; the scripts use ``shift``.
* The search builds its ops with the run's retrain recipe, like every method (``ctx.op_options``):
  the suite's (LoRA scale 16) by default; under ``--retrain-recipe authors`` S3Delta's own
  ``lora_alpha / r`` (16 at rank 1; ``lora_scaling``, :meth:`S3Delta.authors_recipe`), in the search
  and in the retrain.
* ``module_size`` fixes the sized modules at another candidate size than 1 (not in the paper): a
  budget above the size-1 space (more than every module at rank 1) cannot be spent otherwise.
* The gates multiply the modules' outputs through the shared :class:`~spaces.inject.Supernet`
  slots (``out + z_i * delta_i``), which is S3Delta's ``MixLayerParallel`` forward for parallel ops
  and applies the same gate to serial ops' deltas.
* S3Delta-M on T5 has 916 modules; on other backbones the space is this suite's S2 (or S1), whose
  module set may differ slightly (e.g. gated FFNs add a LoRA on the gate).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import torch
from torch import nn

from core.batches import cycle
from core.trace import Trace, TracePlot, report_progress
from core.training import Trainer
from methods.base import OneShotMethod, SearchContext, SearchResult, whole_space
from methods.knapsack import greedy_fill
from methods.s3delta.config import S3DeltaConfig
from methods.s3delta.gates import concrete_gates, keep_probs, l0_penalty, solve_shift
from methods.s3delta.unrolled import unrolled_arch_grad
from methods.training import WeightTrainer, batch_loss, build_supernet
from spaces.architecture import Architecture


def fixed_size_space(space, size: int):
    """The same space with every sized module fixed at ``size`` (one of its candidate sizes)."""
    if size not in space.sizes:
        raise ValueError(f"module_size {size} is not a candidate size of space {space.name!r}; "
                         f"valid: {', '.join(map(str, space.sizes))}")
    return type(space)(space.sites, sizes=(size,), backbone_name=space.backbone_name)


class _Gates:
    """The relaxation state of one search: costs, budget, the current shift and noise."""

    def __init__(self, cfg: S3DeltaConfig, costs: np.ndarray, budget: int, seed: int, device: torch.device):
        self.cfg, self.costs, self.budget, self.device = cfg, costs, budget, device
        self.generator = torch.Generator().manual_seed(seed)
        self.shift: float = 0.0
        self.noise: torch.Tensor | None = None
        self.stretch = (cfg.stretch_left, cfg.stretch_right)

    def resample(self, alpha: torch.Tensor) -> None:
        """Solve the shift for the current ``alpha`` (warm start: the last shift) and draw new noise."""
        if self.cfg.strategy == "shift":
            self.shift = solve_shift(alpha, self.costs, self.budget, self.cfg.beta, start=self.shift)
        self.noise = torch.rand(len(self.costs), generator=self.generator, dtype=torch.float64).to(self.device)

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        if self.cfg.strategy == "l0":
            return torch.sigmoid(alpha / self.cfg.beta)
        if self.shift == -math.inf:  # the whole space fits: every module is kept, alpha gets no gradient
            return torch.ones_like(alpha)
        return keep_probs(alpha, self.shift, self.cfg.beta, self.cfg.shift_detach)

    def sample(self, alpha: torch.Tensor) -> torch.Tensor:
        """Training gates with this step's noise (differentiable in ``alpha``)."""
        return concrete_gates(self.probs(alpha), self.noise, self.cfg.hard_forward, self.stretch)

    def penalty(self, alpha: torch.Tensor) -> torch.Tensor | float:
        if self.cfg.strategy == "l0" and self.cfg.lambda0 > 0:
            return self.cfg.lambda0 * l0_penalty(alpha, self.cfg.beta, self.stretch)
        return 0.0

    def expected_params(self, alpha: torch.Tensor) -> float:
        return float(self.probs(alpha).detach().cpu().numpy() @ self.costs)


class S3Delta(OneShotMethod):
    """S3Delta-M: a shifted-sigmoid gate per module at size 1, searched by DARTS (see the module docstring)."""

    name = "s3delta"
    label = "S3Delta"
    paper = "Hu et al., Sparse Structure Search for Delta Tuning, NeurIPS 2022"
    Config = S3DeltaConfig

    def searched_space(self, space):
        """S3Delta-M searches ``space`` with every sized module at ``module_size``."""
        return fixed_size_space(space, self.config.module_size)

    def authors_recipe(self) -> dict[str, dict]:
        return {"lora": {"scaling": self.config.lora_scale()}}

    def settings(self) -> list[str]:
        return ["1st-order DARTS"] if self.config.darts == "first_order" else []

    def run_search(self, ctx: SearchContext) -> SearchResult:
        """Search ``ctx.space`` (sized modules fixed at ``module_size``) under ``ctx.budget``.

        Returns the greedy structure of the best validation checkpoint's ``alpha``; its ``info``
        holds the best step, the last shift and each module's exported ``alpha``. The trace (one row
        per validation: loss, shift, expected size, score) goes to ``ctx.out_dir`` when set.
        (:meth:`search` raises ``ValueError`` for a budget below the smallest module or a
        ``module_size`` that is not a candidate size.) Returns the whole fixed-size space when it
        fits, with a warning when it is below the floor (``methods.base.whole_space``).
        """
        cfg: S3DeltaConfig = self.config
        space = self.searched_space(ctx.space)
        fits = whole_space(space, ctx.budget)
        if fits is not None:
            return fits
        costs = np.array([space.choice_params(i)[-1] for i in range(len(space))], dtype=float)

        start = time.perf_counter()
        task_model, net = build_supernet(dataclasses.replace(ctx, space=space))
        weights = net.weights() + list(task_model.head_parameters())
        total = ctx.total_steps
        trainer = WeightTrainer(weights, ctx, total, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
        alpha = nn.Parameter(torch.zeros(len(space), dtype=torch.float64, device=ctx.device))
        # alpha's update is the suite's training step too (AdamW, linear decay, clipping), on a
        # gradient computed here (first- or second-order DARTS) rather than by a backward pass
        arch_trainer = Trainer([alpha], cfg.arch_lr, total, weight_decay=0.0, grad_clip=cfg.arch_grad_clip)
        gates = _Gates(cfg, costs, ctx.budget, ctx.seed, ctx.device)

        def set_gates(z: torch.Tensor) -> None:
            net.set_keep(z.float().unbind(0))  # one autograd node for all modules, not N selects

        def arch_loss(batch) -> torch.Tensor:
            set_gates(gates.sample(alpha))
            return batch_loss(task_model, batch, ctx) + gates.penalty(alpha)

        def train_loss(batch) -> torch.Tensor:
            set_gates(gates.sample(alpha))
            return batch_loss(task_model, batch, ctx)

        eval_every = self._eval_every(ctx)
        trace = Trace(ctx.report)
        best_score, best_step, best_alpha = -math.inf, 0, alpha.detach().clone()
        weight_batches, arch_batches = cycle(ctx.weight_train), cycle(ctx.arch_train)
        for step in range(1, total + 1):
            trn, val = next(weight_batches), next(arch_batches)
            # --- alpha step on an arch-train batch (one noise draw for all of its losses) ---
            gates.resample(alpha)
            if cfg.darts == "second_order":
                grad = unrolled_arch_grad(alpha, trainer.params, trainer.optimizer,
                                          lambda trn=trn: train_loss(trn), lambda val=val: arch_loss(val))
            else:
                (grad,) = torch.autograd.grad(arch_loss(val), [alpha], allow_unused=True)
                grad = torch.zeros_like(alpha) if grad is None else grad
            alpha.grad = grad
            arch_trainer.update()
            # --- weight step on a weight-train batch, with fresh gates (no gradient to alpha) ---
            gates.resample(alpha)
            with torch.no_grad():
                set_gates(gates.sample(alpha))
            loss = trainer.train_on(task_model, trn)

            if eval_every and (step % eval_every == 0 or step == total):
                score = self._validate(ctx, task_model, net, gates, alpha, costs)
                trace.add({"step": step, "total": total, "loss": loss, "shift": gates.shift,
                           "expected_params": gates.expected_params(alpha), f"val_{ctx.selection_metric}": score})
                if score >= best_score:
                    best_score, best_step, best_alpha = score, step, alpha.detach().clone()
            else:
                report_progress(ctx.report, step, total, loss=loss)
        if not eval_every:
            best_alpha = alpha.detach().clone()

        keep = greedy_fill(best_alpha, costs, ctx.budget)
        arch = _export(space, keep)
        files = trace.save(ctx.out_dir, self.name, TracePlot(("expected_params",), budget=ctx.budget))
        if ctx.out_dir is not None:  # the exported checkpoint's alpha per module, beside the trace
            files["alpha_json"] = f"{self.name}_alpha.json"
            (ctx.out_dir / files["alpha_json"]).write_text(json.dumps(
                {d.key: float(a) for d, a in zip(space.dims(), best_alpha.cpu().tolist())}, indent=1))
        return SearchResult(arch, {
            "best_step": best_step, "best_score": best_score if math.isfinite(best_score) else None,
            "steps": total, "shift": gates.shift, "search_time_s": time.perf_counter() - start, **files})

    def _eval_every(self, ctx: SearchContext) -> int:
        if self.config.eval_every is not None:
            return self.config.eval_every
        return len(ctx.weight_train)  # type: ignore[arg-type]

    @torch.no_grad()
    def _validate(self, ctx, task_model, net, gates: _Gates, alpha, costs) -> float:
        """The selection metric with validation gates: ``z = p``, or the greedy 0/1 structure if hard."""
        if self.config.hard_forward:
            z = torch.tensor(greedy_fill(alpha, costs, ctx.budget), dtype=torch.float32)
        else:
            z = gates.probs(alpha)
        net.set_keep(z.float().to(ctx.device).unbind(0))
        return float(ctx.evaluate(task_model)[ctx.selection_metric])


def _export(space, keep) -> Architecture:
    return space.from_choices([d.choices[-1] if k else 0 for d, k in zip(space.dims(), keep)])
