"""PrunePEFT: a re-implementation of Lawton et al., "Neural Architecture Search for Parameter-Efficient
Fine-tuning of Large Pre-trained Language Models", Findings of ACL 2023 (the baseline BIPEFT calls
"PrunePEFT").

No public code exists for this paper, and BIPEFT's re-implementation is not released either
(methods.md §3). This is the re-implementation methods.md §3 recommends, built from the paper's
abstract-level description (structured pruning of a PEFT supernet guided by a first-order Taylor
approximation of the loss change). It is **not** "PrunePEFT: Iterative Hybrid Pruning for PEFT of
LLMs" (Yu et al., 2025), which prunes whole modules with a hybrid of criteria.

The algorithm:

1. Train the whole space as a supernet (every module on, sized modules at their largest size:
   S2 at rank 8) on the whole train split with AdamW (``ctx.lr``, linear decay) for the retrain's
   epochs (``ctx.train``, ``ctx.train_steps``): the method is not bi-level, and BIPEFT's Table 3
   gives it a search time equal to its retrain time.
2. At every step accumulate the Taylor importance ``I_j = sum_t |theta_j g_j|`` of every PEFT
   weight (:mod:`methods.prunepeft.taylor`; the raw gradient, before clipping).
3. Score each *group* by the sum of its weights' ``I_j`` (:mod:`methods.prunepeft.groups`: a LoRA
   rank-1 component, a rank-1 component of both factorisations of the low-rank adapter, an adapter
   channel, a prefix position, a bias or LN vector). Removing groups raises the loss by about the
   sum of their scores, so keep the set of groups with the largest total score within the budget.
4. Groups map back to sizes: a module keeping ``r`` channels has size ``r``, and ``r`` must be a
   candidate size ({1, 4, 8}) or 0. ``select_sizes`` picks, per module, a candidate size (its best
   channels) or nothing so that the total kept score is the largest possible with
   ``0.8 B <= params <= B`` (exactly, by a knapsack DP; without the lower bound when no selection
   reaches it). The result is an :class:`~spaces.architecture.Architecture`, which the harness
   retrains from a fresh init (methods.md §3, step 3).

``schedule='iterative'`` prunes in ``rounds`` rounds at evenly spaced steps, keeping
``F * (B / F) ** (r / rounds)`` parameters after round ``r`` (``F``: the full space, ``B``: the budget):
a geometric schedule ending at ``B``. Between rounds training continues on the survivors: each kept
module's channels are reordered best first (weights, AdamW moments and importance alike) and the
module is pinned at its size, removed modules are skipped. Importance keeps accumulating over the
whole search. Each intermediate round keeps a superset of the best final architecture under the
scores so far, so the last round can still reach ``0.8 B`` whenever the full space could.

Deviations and choices where the paper is silent (all [NOT FOUND] in methods.md §3):

* Only structured pruning: an :class:`~spaces.architecture.Architecture` holds module sizes, not
  weight masks, so the paper's unstructured mode has no place in this suite.
* The paper's new LoRA initialisation is not described beyond its abstract; the ops' standard
  init is used (LoRA ``A`` kaiming-uniform, ``B`` zero).
* Snapping groups to candidate sizes is this suite's constraint (the paper prunes freely); the
  exact knapsack replaces a greedy walk, which can miss ``0.8 B`` at small budgets.
* The paper does not describe its data use; training on the whole train split for the retrain's
  epochs is what BIPEFT's Table 3 reports (search 20 min = retrain 20 min).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from core.batches import cycle
from core.trace import Trace, report_progress
from methods.base import BUDGET_FLOOR, OneShotMethod, SearchContext, SearchResult, budget_floor, whole_space
from methods.prunepeft.config import PrunePEFTConfig
from methods.prunepeft.groups import ModuleGroups, channel_dims, module_groups, select_sizes
from methods.prunepeft.taylor import TaylorImportance
from methods.training import WeightTrainer, build_supernet
from spaces.inject import Supernet


def budget_schedule(total_steps: int, full: int, budget: int, rounds: int) -> list[tuple[int, float]]:
    """``(step, budget)`` of each pruning round: evenly spaced steps, geometric budgets from ``full`` to ``budget``."""
    out = []
    for r in range(1, rounds + 1):
        step = max(1, round(r * total_steps / rounds))
        out.append((step, budget if r == rounds else full * (budget / full) ** (r / rounds)))
    return out


class PrunePEFT(OneShotMethod):
    """Taylor-importance structured pruning of the PEFT supernet (see the module docstring)."""

    name = "prunepeft"
    label = "PrunePEFT"
    paper = ("Lawton et al., Neural Architecture Search for Parameter-Efficient Fine-tuning of Large "
             "Pre-trained Language Models, Findings of ACL 2023 (re-implementation; no public code)")
    Config = PrunePEFTConfig

    def run_search(self, ctx: SearchContext) -> SearchResult:
        """Train the supernet of ``ctx.space``, prune it to ``ctx.budget`` and return the sizes kept.

        Traces each pruning round (``step``, ``round_budget``, ``kept_params``, ``scored_steps``).
        Returns the whole space when it fits in the budget, with a warning when it is below the
        floor (``methods.base.whole_space``).
        """
        cfg: PrunePEFTConfig = self.config
        space, budget = ctx.space, ctx.budget
        fits = whole_space(space, budget)
        if fits is not None:
            return fits
        full = space.full_size()

        task_model, net = build_supernet(ctx)
        steps = ctx.train_steps
        trainer = WeightTrainer(net.weights() + list(task_model.head_parameters()), ctx, steps,
                                weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
        importance = TaylorImportance(net.weights(), cfg.accumulate)  # updated on the raw gradients
        rounds = (budget_schedule(steps, full, budget, cfg.rounds) if cfg.schedule == "iterative"
                  else [(steps, budget)])
        batches = cycle(ctx.train)
        trace = Trace(ctx.report)
        sizes: list[int] = []
        for step in range(1, steps + 1):
            loss = trainer.train_on(task_model, next(batches), on_grads=importance.update)
            if not (rounds and rounds[0][0] <= step):  # a pruning round's trace row reports this step
                report_progress(ctx.report, step, steps, loss=loss)
            while rounds and rounds[0][0] <= step:
                _, round_budget = rounds.pop(0)
                groups = self._groups(net, importance)
                # an intermediate round keeps a superset of today's best final architecture, so
                # that the last round can always still reach 0.8 B
                final = select_sizes(groups, budget, floor=budget_floor(budget)) if rounds else None
                sizes = select_sizes(groups, math.floor(round_budget), floor=budget_floor(round_budget), at_least=final)
                trace.add({"step": step, "total": steps, "loss": loss, "round_budget": round_budget,
                           "scored_steps": importance.steps,
                           "kept_params": sum(g.cost(k) for g, k in zip(groups, sizes))})
                if rounds:  # training goes on: prune the supernet itself
                    self._prune(net, groups, sizes, trainer.optimizer, importance)

        arch = space.from_choices(sizes)
        kept = space.param_count(arch)
        if kept < budget_floor(budget):
            warnings.warn(f"PrunePEFT kept {kept} parameters, less than {BUDGET_FLOOR:g} x the budget of {budget}",
                          stacklevel=2)
        return SearchResult(arch, {"steps": steps, "rounds": cfg.rounds if cfg.schedule == "iterative" else 1,
                                   "params": kept, **trace.save(ctx.out_dir, self.name)})

    @staticmethod
    def _groups(net: Supernet, importance: TaylorImportance) -> list[ModuleGroups]:
        out = []
        for op, dim in zip(net.modules, net.dims):
            if op.removed:
                out.append(ModuleGroups(np.zeros(0), 1, 0.0, 0, dim.sizes or (1,), np.zeros(0, dtype=int)))
                continue
            scores = {name: importance.of(p) for name, p in op.named_parameters()}
            out.append(module_groups(op, scores, dim.sizes, live=op.active_size if op.sized else None))
        return out

    @staticmethod
    @torch.no_grad()
    def _prune(net: Supernet, groups: list[ModuleGroups], sizes: list[int], optimizer: torch.optim.Optimizer,
               importance: TaylorImportance) -> None:
        """Shrink the supernet to ``sizes``: remove dropped modules, keep each module's best channels first."""
        for i, (op, g, k) in enumerate(zip(net.modules, groups, sizes)):
            if op.removed:
                continue
            if k == 0:
                net.remove(i)
                continue
            if not op.sized:
                continue
            perm = torch.as_tensor(np.concatenate([g.order, np.arange(len(g.order), op.size)]), device=
                                   next(op.parameters()).device)
            for name, p in op.named_parameters():
                dim = channel_dims(op)[name]
                if dim is None:
                    continue
                tensors = [p, importance.accumulator(p)]
                tensors += [v for v in optimizer.state.get(p, {}).values() if torch.is_tensor(v) and v.shape == p.shape]
                for t in tensors:
                    t.copy_(t.index_select(dim, perm))
            net.fix_size(i, k)
