"""AdaLoRA as a budgeted search: HF peft's AdaLoRA decides the ranks, the harness retrains them.

Zhang et al., "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning", ICLR 2023
(https://openreview.net/forum?id=lq62uWRJjiY; code: QingruZhang/AdaLoRA). Each targeted linear gets
an SVD-form update ``P diag(E) Q`` (Eq. 3) with ``init_r`` singular triplets, trained with an
orthogonality regulariser on ``P`` and ``Q`` (Eq. 4); every step the sensitivity ``|w * g|`` of each
weight is smoothed (Eq. 8) and its uncertainty tracked (Eq. 9), their product scores each triplet
(Eqs. 10-11), and the triplets of lowest score are masked down to a total rank that falls from the
initial one to the target along a cubic schedule (Algorithm 1: ``tinit`` warm-up steps, ``tfinal``
final fine-tuning steps at the target rank). All of that is peft 0.21's ``AdaLoraModel`` as is
(``get_peft_model`` with an ``AdaLoraConfig``, ``update_and_allocate`` after every step); this module
chooses its inputs and reads its result:

* **Data**: the whole train split for the retrain's epochs (``ctx.train``, ``ctx.train_steps``;
  AdaLoRA is not bi-level; the weight-train half when a context has no ``train``); the validation
  split only for the own score below; never the test split.
* **Targets**: :class:`~methods.adalora.space.AdaLoRASpace`: the linears at ``target_modules``
  (default every attention projection and FFN linear, as the authors' scripts), given to peft by
  their module paths from :mod:`spaces.sites`, which knows each family (BERT-like, T5, Llama-like).
* **Budget**: the run's budget ``B`` is in parameters, AdaLoRA's in ranks. The total target rank is
  ``K = floor(budget_fill * B / mean rank cost)`` (:meth:`AdaLoRASpace.rank_budget`) and is set as
  the allocator's ``target_bgt``: the authors' ``RankAllocator`` takes such a total
  (``target_total_rank``), peft's config only an average ``target_r``, which cannot express it.
  ``init_r`` is ``init_ratio * K / modules`` rounded up unless set.
* **Schedule**: the MNLI script's step counts scaled to the run's steps (:meth:`AdaLoRAConfig.schedule`).
  ``update_and_allocate`` gets the number of updates done (1 .. total), so its final allocation
  (step ``total - tfinal``) always happens.
* **Scaling**: AdaLoRA's own training uses peft's scaling, ``lora_alpha / init_r`` (the authors'
  ``lora_alpha`` 16); the run's retrain recipe (its ``op_options``) does not enter this search: the
  exported architecture is retrained with the recipe, like every other.
* **Regulariser**: peft adds it in ``AdaLoraModel.forward`` to an output's ``loss``; the task model
  is wrapped in a module whose output carries its loss, so every family gets peft's own regulariser.

The result is the final rank per linear as a fixed :class:`~spaces.architecture.Architecture`
(``lora`` at each linear that kept a triplet, at that many ranks), in AdaLoRA's own space: the run
space's sizes do not bound the ranks, and the info says so. When the ranks cost more than ``B`` or
less than ``0.8 B``, :func:`~methods.adalora.fit.fit_ranks` moves the fewest triplets it can, by
AdaLoRA's own final scores; the info reports it. The info also keeps AdaLoRA's own score: its model
after its own training, on validation (``own_validation``), which a table may show as a separate,
labelled row.

Deviations: the step counts are scaled (above); the head of a BERT-like classifier trains with the
AdaLoRA weights (the authors' classifier trains too); the suite's learning rate and linear decay,
not the scripts' warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from core.batches import cycle, to_device
from core.trace import Trace
from core.training import Trainer
from methods.adalora.config import AdaLoRAConfig, Schedule
from methods.adalora.fit import fit_ranks
from methods.adalora.space import AdaLoRASpace
from methods.base import OneShotMethod, SearchContext, SearchResult, TaskModel, budget_floor, whole_space

ADAPTER = "default"  # peft's adapter name
ROOT = "task.model."  # where the transformers model sits in the module peft wraps


@dataclass
class _Output:
    loss: torch.Tensor


def _loss(adalora: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The task loss plus peft's orthogonality regulariser."""
    return adalora(batch).loss


class _WithLoss(nn.Module):
    """The task model, its loss returned as an output's ``.loss`` (peft adds its regulariser there)."""

    def __init__(self, task: TaskModel):
        super().__init__()
        self.task = task

    def forward(self, batch: dict[str, Any]) -> _Output:
        return _Output(self.task(batch))


def param_name(path: str, part: str) -> str:
    """The name peft gives part ``lora_A``/``lora_E``/``lora_B`` of the linear at ``path``."""
    return f"{ROOT}{path}.{part}.{ADAPTER}"


def triplet_scores(allocator, path: str) -> list[float]:
    """The importance of each triplet of the linear at ``path``, from peft's allocator state.

    Paper Eq. 11: ``S_i = s(E_i) + mean_j s(Q_ij) + mean_j s(P_ji)``, with ``s = I_bar * U_bar``
    (Eqs. 8-10), the smoothed sensitivity times the uncertainty that peft's ``RankAllocator`` keeps
    per weight (``exp_avg_ipt``, ``exp_avg_unc``); the score its final allocation ranks by.
    """
    def s(part: str) -> torch.Tensor:
        name = param_name(path, part)
        return allocator.exp_avg_ipt[name] * allocator.exp_avg_unc[name]

    score = s("lora_E").view(-1) + s("lora_A").mean(dim=1) + s("lora_B").mean(dim=0)
    return score.double().cpu().tolist()


class AdaLoRA(OneShotMethod):
    """HF peft's AdaLoRA under the run's budget, exporting its final ranks (see the module docstring)."""

    name = "adalora"
    label = "AdaLoRA"
    paper = "Zhang et al., Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning, ICLR 2023 (HF peft)"
    Config = AdaLoRAConfig

    def searched_space(self, space) -> AdaLoRASpace:
        """AdaLoRA's own space on the run's backbone: LoRA at any rank on the targeted linears."""
        return AdaLoRASpace(space.sites, self.config.target_modules, backbone_name=space.backbone_name)

    def run_search(self, ctx: SearchContext) -> SearchResult:
        """Train AdaLoRA on the train split under ``ctx.budget`` and return its final ranks.

        Returns the whole of AdaLoRA's space when it fits in the budget (``methods.base.whole_space``).

        Raises:
            ValueError: fewer than 2 planned steps, or an ``init_r`` that cannot hold the rank budget.
        """
        cfg: AdaLoRAConfig = self.config
        space, budget = self.searched_space(ctx.space), ctx.budget
        fits = whole_space(space, budget)
        if fits is not None:
            return fits
        data, steps = (ctx.train, ctx.train_steps) if ctx.train is not None else (ctx.weight_train, ctx.total_steps)
        schedule = cfg.schedule(steps)
        total_rank = space.rank_budget(budget, cfg.budget_fill)
        init_r = self._init_rank(space, total_rank)
        paths = space.module_paths()

        torch.manual_seed(ctx.seed)
        task_model = ctx.make_model()
        adalora = self._inject(task_model, paths, init_r, total_rank, schedule)
        task_model.train()
        trainer = Trainer(task_model.parameters(), ctx.lr, steps, cfg.weight_decay, cfg.grad_clip,
                          autocast=ctx.autocast, what="search")
        trace, batches, scores = Trace(ctx.report, cfg.report_every), cycle(data), None
        for step in range(1, steps + 1):
            loss = trainer.step(partial(_loss, adalora, to_device(next(batches), ctx.device)))
            if step == schedule.final_step:  # what the final allocation ranks by (peft resets it there)
                scores = [triplet_scores(adalora.rankallocator, p) for p in paths]
            adalora.update_and_allocate(step)
            trace.add({"step": step, "total": steps, "loss": loss, "lr": trainer.lr,
                       "total_rank": adalora.rankallocator.budget_schedule(step)[0]})
        own = ctx.evaluate(task_model)

        pattern = adalora.peft_config[ADAPTER].rank_pattern
        kept = [list(pattern[param_name(p, "lora_E")]) for p in paths]
        costs = [space.rank_cost(i) for i in range(len(space))]
        fit = fit_ranks(kept, scores, costs, budget, budget_floor(budget))
        arch = space.from_choices(fit.ranks)
        dims = space.dims()
        info = {
            "space": space.name,
            "ranks_bounded_by_run_space": False,
            "rank_range": [1, init_r],
            "run_space": ctx.space.name,
            "target_modules": list(cfg.target_modules),
            "peft_target_modules": sorted({p.rsplit(".", 1)[-1] for p in paths}),
            "modules": len(space),
            "rank_budget": total_rank,
            "init_r": init_r,
            "schedule": {"total_step": schedule.total_step, "tinit": schedule.tinit, "tfinal": schedule.tfinal,
                         "deltaT": schedule.deltaT},
            "own_scaling": cfg.lora_alpha / init_r,
            "adalora_ranks": {str(d.site): sum(k) for d, k in zip(dims, kept) if any(k)},
            "own_validation": own,
            "budget_fit": {"params_before": fit.params_before, "params_after": fit.params_after,
                           "dropped": fit.dropped, "added": fit.added,
                           "modules_changed": {str(dims[i].site): list(c) for i, c in fit.changed.items()}},
            "params": space.param_count(arch),
            **trace.save(ctx.out_dir, self.name),
        }
        return SearchResult(arch, info)

    def _init_rank(self, space: AdaLoRASpace, total_rank: int) -> int:
        """``init_r``: as set, or ``init_ratio`` x the average target rank rounded up; in every case more
        triplets than the target in all (peft masks at least one) and at most the space's largest rank."""
        n = len(space)
        init_r = self.config.init_r or min(space.max_rank, max(math.ceil(self.config.init_ratio * total_rank / n),
                                                               total_rank // n + 1))
        if init_r * n <= total_rank or init_r > space.max_rank:
            raise ValueError(f"init_r={init_r} cannot hold the rank budget: {n} modules x init_r must exceed the "
                             f"total target rank {total_rank}, and init_r must be at most {space.max_rank} "
                             "(the smallest targeted linear's rank)")
        return init_r

    def _inject(self, task_model: TaskModel, paths: list[str], init_r: int, total_rank: int,
                schedule: Schedule) -> nn.Module:
        """peft's AdaLoRA in the task model's linears at ``paths``; returns peft's ``AdaLoraModel``."""
        from peft import AdaLoraConfig, get_peft_model

        cfg: AdaLoRAConfig = self.config
        config = AdaLoraConfig(
            target_modules=paths, init_r=init_r, target_r=max(1, total_rank // len(paths)),
            tinit=schedule.tinit, tfinal=schedule.tfinal, deltaT=schedule.deltaT, total_step=schedule.total_step,
            beta1=cfg.beta1, beta2=cfg.beta2, orth_reg_weight=cfg.orth_reg_weight, lora_alpha=cfg.lora_alpha)
        adalora = get_peft_model(_WithLoss(task_model), config).base_model
        adalora.rankallocator.target_bgt = total_rank  # the total, which target_r (an average) cannot say
        for p in task_model.head_parameters():  # peft freezes everything but its adapters
            p.requires_grad_(True)
        return adalora
