"""BIPEFT: budget-guided iterative search with early selection.

Paper: Aofei Chang, Jiaqi Wang, Han Liu, Parminder Bhatia, Cao Xiao, Ting Wang, Fenglong Ma.
"BIPEFT: Budget-Guided Iterative Search for Parameter Efficient Fine-Tuning of Large Pretrained
Language Models", Findings of EMNLP 2024. Reference code: github.com/Aofei-Chang/BIPEFT @ 204dfa6
(read through ``reference/methods.md`` §1, whose item numbers below are §1.12's).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from methods.base import OneShotMethod, SearchContext, SearchResult
from methods.bipeft.config import BIPEFTConfig
from methods.bipeft.early_selection import EarlySelector, Observation, Selection
from methods.bipeft.equations import ModuleTable
from methods.bipeft.gates import ArchSnapshot, DisentangledWeights
from methods.bipeft.sensitivity import Capture, GradientTape
from methods.bipeft.session import SearchSession, fit_summary

ARCH_L1 = 0.01  # weight of the authors' arch regulariser (architect.py:44-53), code_compat only


class BIPEFT(OneShotMethod):
    """BIPEFT (Chang et al., Findings of EMNLP 2024): Algorithm 1 with Eqs. 1-10.

    **Search spaces** (§3.1): every module ``n`` has binary weights ``Θ_n ∈ R^2`` (drop/keep); a
    sized module also has ``Φ_n ∈ R^K`` over the candidate sizes. Both start at ``1e-3 * randn``
    (seeded). Hard Gumbel-softmax samples with straight-through gradients gate the supernet; the
    temperature anneals 5 → 1 (linearly per step by default; ``temperature_schedule="epoch"`` is
    the authors' per-epoch form). Weight entanglement: a size distribution is one max-size product
    with per-channel weights inside each op (``spaces.ops``), never ``K`` copies.

    **One step** (§3.5, first-order DARTS), paper semantics:

    1. ΔW on a weight-train batch (AdamW, lr from the context, linear decay over the planned steps)
       under a hard Gumbel sample of Θ and the step's size draw from Φ; modules sampled off are
       skipped (no compute).
    2. Θ on an arch-train batch with Φ fixed: keep = straight-through sample of Θ (every kept
       module computed, so every Θ row gets a gradient), sizes = the step's draw, detached.
    3. Φ on the same batch with the updated Θ: keep = a hard sample of the new Θ (modules sampled
       off skipped), sizes = the step's draw with its straight-through gradient (the soft sample of
       the same Gumbel noise). Architecture optimiser: Adam, lr 0.01.
    4. Sensitivity (Eqs. 1-3) and its EMA (Eq. 4); ``C_n`` (Eq. 8), ``E_t`` (Eq. 7); the
       importance indicator ``I_t`` and stability ``β_t`` (Eq. 5); a trigger when ``β_t >= τ``.
    5. At a trigger: ``R_z`` (Eq. 6) and removal of the least sensitive kept modules until their
       parameters reach it (§3.3.2); dimension stability ``λ`` (Eq. 9), ``Y_z`` (Eq. 10) and fixing
       of the ``Y_z`` least-``λ`` unfixed modules at their argmax size (§3.4.2).

    The search stops after ``Z`` triggers (or at the step cap, ``ctx.total_steps``; the result's
    ``info["stop_reason"]`` says which). The architecture is the kept modules at their fixed
    (``k*``) or argmax size. A safety net, :mod:`methods.bipeft.budget`, fits it to
    ``budget_floor * B <= params <= B`` if it is not (trim the least sensitive, or fill with the most
    sensitive); ``info["export"]`` reports the kept parameters before it and every module it
    dropped or added, so a table can show that the search, not the fit, chose the architecture.

    **The budget reaches the kept set (default ``budget_count="exported"``).** Eq. 7 weighs each
    module by its soft keep probability ``p_n``, while a removal takes the module's whole size, so
    ``E_t`` falls below ``B`` while the kept modules still hold far more, and the export fit would
    do the real selection. By default ``E_t`` counts what the search would export now: the kept
    modules (``b_n``) at their fixed or argmax size. ``R_z = (E_t - B) / (Z - z)`` then spreads the
    real excess evenly over the triggers left, and after trigger ``Z`` the kept set holds at most
    ``B`` (the last trigger's reduction is the whole remaining excess). The authors' code reaches
    ``B`` by switching to ``p_n = b_n`` for the last 10 triggers (``budget_count="authors"``, the
    default under ``code_compat``); ``"expected"`` is Eqs. 7-8 as printed. In every form, a removal
    that would take the kept set below ``budget_floor * B`` is passed over (the next least
    sensitive module is tried instead).

    **Temperature.** ``temperature_schedule="linear"`` (default) anneals 5 → 1 over the fewest steps
    the triggers need (warm-up + H + Z), the expected length of the search, then stays at the end
    temperature; annealing over the planned epochs would end the search near 4.4 when the triggers
    come early. ``"epoch"`` is the authors' per-epoch schedule.

    **What early selection saves**: a removed module is skipped in every forward and backward pass
    (``Supernet.remove``); a fixed module computes only its slice and takes no Φ gradient
    (``Supernet.fix_size``); the search ends at ``Z`` triggers, not at an epoch count.
    Sensitivities reuse the gradients of passes the algorithm already makes: ``G(D_tra)`` from
    step 1's backward (read before clipping and the update), ``G(D_val)`` from step 2's backward
    (which computes the PEFT weights' gradients alongside Θ's); step 3 computes Φ's gradient only.

    **Where this departs from the paper's text** (ambiguities resolved, documented where coded):

    * §3.3.2 removes "if their total parameter size is smaller than R_z" and Algorithm 1 "until the
      reduction R_z is achieved": modules go in ascending sensitivity while the total removed is
      below ``R_z`` (the one reaching it included). Stopping before the first module that would
      exceed ``R_z`` instead stalls (``R_z`` starts at ``(E_t - B) / Z``, below most modules).
    * **Sensitivity counts what trained in the step (default ``sensitivity="trained"``).** Eq. 2's
      ``|M_n|`` is "the number of fine-tuned parameters of the module", and Eq. 3 compares the
      gradients ``G_n(D_tra)`` and ``G_n(D_val)`` of one module. A sized module trained at size ``k``
      gets a gradient on its size-``k`` slice only, so the three passes of a step share one size
      draw (both gradients cover the same slice, as in the authors' binary stage, which uses argmax
      Φ in both) and ``|M_n|`` is the parameters of that slice (``q_n[k]``; the fixed size once
      fixed; a BitFit/LNFit vector whole). Then ``f_n`` is the mean ``|w G|`` over the parameters
      that received a gradient, comparable between a LoRA and a bias vector whatever size the step
      drew. ``sensitivity="allocated"`` is the earlier form, kept for comparison: each pass draws its
      own sizes (reading §3.5's "fix Φ" as sampling the fixed Φ anew in each pass) and ``|M_n|`` is
      the module's allocated parameters (its largest size until fixed: with weight entanglement all
      of them are fine-tuned over the search), which dilutes a sized module drawn at size ``k`` by
      about ``k / K_max`` against a vector.
    * Eq. 3 with a zero gradient (a module gated off in one of the passes) gives ``α_n = 0``.
    * Eq. 5 averages the ``H`` most recent consecutive cosines (the printed sum has ``H + 1``
      terms); the indicator history is never reset (as in the code), so triggers can fire on
      consecutive steps. ``I_t`` counts ``C_n`` (Eq. 8) per module.
    * Eqs. 6 and 10 count ``z`` from 0 (triggers before this one), so ``Z - z`` is never 0.
    * Eq. 7 is summed as ``sum_n p_n C_n``; ``q_n`` is exact (``space.choice_params``).
    * Eq. 9's KL is ``KL(softmax Φ_j || softmax Φ_t)`` as written; ``σ`` is the sample standard
      deviation of each logit over the steps since the last trigger (0 with one step).
    * Eq. 10: ``v`` covers the sized modules only; removed modules count as fixed (``d = 1``) and
      have ``v = 0``, also those removed at this trigger; a zero vector gives ``cos = 0``.
    * Eq. 7's ``E_t`` counts the exported sizes by default (see above); the printed form is
      ``budget_count="expected"``.

    **code_compat=True** reproduces the authors' code where it departs from the paper (§1.12):

    1. Eq. 3 is the mean over the module's tensors of ``cos(w ⊙ G_tra, w ⊙ G_val)``, and Eq. 2
       divides by the module's largest size always.
    2. Eq. 5 compares ``I_t`` with each of the ``H`` before it; ``I_t`` skips modules that do not
       fit and continues (greedy knapsack); indicators and the Φ window start after a warm-up of
       ``warmup_epochs`` (the code's ``prune_begin_epoch``; 1 epoch unless set).
    3. Eq. 7 uses ``p_n = b_n`` (hard) for the last 10 triggers. Module removal also skips modules
       that do not fit and removes the least sensitive one when nothing fits and ``R_z > 0`` (here
       never below ``budget_floor * B``: the code's forced removal could empty the supernet).
    4. Eq. 10's cosine is over argmax *indices* without zeros for removed modules (NaN → 1),
       divides by ``Z - z - 1`` and fixes every remaining dimension at the last two triggers;
       Eq. 9's KL is reversed (``F.kl_div(log p_j, p_t)``).
    8. Θ and Φ are updated on alternating steps (odd: Θ with sizes at argmax Φ; even: Φ), the
       arch step comes before the ΔW step (which runs at argmax Φ), and the loss carries the
       arch L1 regulariser ``0.01 * sum mean|softmax(a) - a|`` (Adam steps both tensors).
    9. In Φ steps every kept module is on (the code's ``argmax(sample) | b``). Removed modules
       stay removed: the code's OR would also switch a *pruned* module back on when its Θ sample
       is 1, which physical removal (the point of early selection) rules out.

    Not reproduced even under ``code_compat``: the bugs 5 (the dead zero-initialised LR-adapter),
    6 (wo-BitFit gated by wi's weight), 7 (two optimiser steps per batch) and 11 (shared prefix
    parameters as modules); the B-side stop-gradient of item 8 (an op-level detail of the shared
    op library: a straight-through size gradient here sees all of a size's channels); the
    split of Θ/Φ into several tensors (the regulariser takes one mean per tensor, Θ and Φ); the
    code reads a fixed module's size off ``argmax Φ``, which the regulariser and Adam's momentum can
    still move, while here ``k*`` is stored when the size is fixed. Hyper-parameters the code or
    scripts set differently (clip 2.0, weight decay 1e-4, temperature per epoch) are plain options.

    :meth:`search` returns the architecture and, in ``info``, what the record keeps: ``stop_reason``
    (``"max_triggers"`` or ``"step_cap"``), ``steps``, ``planned_steps``, ``triggers``,
    ``max_triggers``, ``first_trigger_step``, ``last_trigger_step``, ``removed_modules``,
    ``fixed_modules``, ``export`` (params before/after the budget fit and the modules
    dropped/added/grown), ``params``, ``budget``, ``search_time_s``, ``op_options`` and, with an
    ``out_dir``, ``trace_csv``/``trace_plot``. The trace has a row per step: the losses, ``beta``,
    the trigger and its reduction, ``E_t`` and the active parameters, how settled Θ and Φ are
    (``theta_keep``, ``theta_entropy``, ``phi_top``, ``phi_entropy``: see
    :meth:`~methods.bipeft.early_selection.EarlySelector.convergence`) and, at a trigger, the keys of
    the modules removed (``removed_keys``) and the sizes fixed (``fixed_sizes``).
    """

    name = "bipeft"
    label = "BIPEFT"
    paper = ("Chang et al., BIPEFT: Budget-Guided Iterative Search for Parameter Efficient Fine-Tuning "
             "of Large Pretrained Language Models, Findings of EMNLP 2024")
    Config: ClassVar[type] = BIPEFTConfig

    def min_steps(self, steps_per_epoch: int) -> int:
        """Warm-up + H + Z: the first trigger needs H + 1 indicators after the warm-up, and at most one
        trigger fires per step."""
        cfg: BIPEFTConfig = self.config
        return math.ceil(cfg.effective_warmup_epochs * steps_per_epoch) + cfg.window + cfg.max_triggers

    def run_search(self, ctx: SearchContext) -> SearchResult:
        cfg: BIPEFTConfig = self.config
        run = SearchSession(ctx, cfg, DisentangledWeights)
        run.anneal_steps = min(run.total, self.min_steps(run.steps_per_epoch))
        selector = EarlySelector(ModuleTable.from_space(ctx.space), ctx.budget, cfg)
        tape = GradientTape(run.net)
        warmup_steps = math.ceil(cfg.effective_warmup_epochs * run.steps_per_epoch)
        one_step = self._code_step if cfg.code_compat else self._paper_step
        stop_reason, steps, trigger_steps = "step_cap", 0, []
        for step in range(run.total):
            temp = run.temperature(step)
            losses, tra, val, drawn = one_step(run, tape, step, temp)
            counts = selector.step_counts(drawn)
            selector.update_scores(tape.scores(tra, val, counts, product_cosine=cfg.code_compat))
            snap = run.arch.snapshot()
            obs = selector.observe(snap, record=step >= warmup_steps)
            event = selector.select(obs, snap) if obs.fired else None
            if event is not None:
                self._apply(run, tape, event)
                trigger_steps.append(step + 1)
            steps = step + 1
            run.trace.add(self._row(run, selector, step, temp, losses, obs, event, snap))
            if selector.finished:
                stop_reason = "max_triggers"
                break
        return self._export(run, selector, stop_reason, steps, trigger_steps)

    # ---- one step ------------------------------------------------------------------------------------
    @staticmethod
    def _paper_step(run: SearchSession, tape: GradientTape, step: int, temp: float,
                    ) -> tuple[dict, Capture, Capture, torch.Tensor | None]:
        """ΔW, then Θ with Φ fixed, then Φ with the updated Θ (§3.5); with ``sensitivity="trained"``
        the three passes share one size draw, which is returned (the size index per module)."""
        arch, net, captured = run.arch, run.net, {}
        draw = arch.draw_sizes() if run.config.effective_sensitivity == "trained" else None
        arch.configure(net, keep="sample", sizes="sample", temperature=temp, draw=draw)
        loss_w = run.weight_step(on_grads=lambda: captured.update(tra=tape.capture()))
        batch = run.next_arch_batch()
        arch.configure(net, keep="st", sizes="sample", temperature=temp, draw=draw)
        loss_theta = run.arch_step(batch, [arch.theta], weights=tape.params)
        val = tape.capture()
        arch.configure(net, keep="sample", sizes="st", temperature=temp, draw=draw)
        loss_phi = run.arch_step(batch, [arch.phi])
        losses = {"loss_weights": loss_w, "loss_theta": loss_theta, "loss_phi": loss_phi}
        return losses, captured["tra"], val, None if draw is None else draw.index

    @staticmethod
    def _code_step(run: SearchSession, tape: GradientTape, step: int, temp: float,
                   ) -> tuple[dict, Capture, Capture, None]:
        """The authors' order: one arch step (Θ on odd steps, Φ on even ones), then ΔW."""
        arch, net, captured = run.arch, run.net, {}
        binary_stage = step % 2 == 0
        if binary_stage:
            arch.configure(net, keep="st", sizes="argmax", temperature=temp)
        else:
            arch.configure(net, keep="ones", sizes="st", temperature=temp)
        loss_arch = run.arch_step(run.next_arch_batch(), [arch.theta, arch.phi], weights=tape.params,
                                  regulariser=ARCH_L1)
        val = tape.capture()
        arch.configure(net, keep="sample", sizes="argmax", temperature=temp)
        loss_w = run.weight_step(on_grads=lambda: captured.update(tra=tape.capture()))
        nan = math.nan
        losses = {"loss_weights": loss_w, "loss_theta": loss_arch if binary_stage else nan,
                  "loss_phi": nan if binary_stage else loss_arch}
        return losses, captured["tra"], val, None

    # ---- selection and export ------------------------------------------------------------------------
    @staticmethod
    def _apply(run: SearchSession, tape: GradientTape, event: Selection) -> None:
        """Make a trigger's decisions real in the supernet: skip removed modules, slice fixed ones."""
        for i in event.removed:
            run.net.remove(i)
        for i, size in event.fixed:
            run.net.fix_size(i, size)
        if event.removed:
            tape.refresh()
        run.modules_changed()

    @staticmethod
    def _row(run: SearchSession, selector: EarlySelector, step: int, temp: float, losses: dict, obs: Observation,
             event: Selection | None, snap: ArchSnapshot) -> dict[str, Any]:
        """One trace row: the losses, the trigger, the budget, how settled Θ and Φ are
        (:meth:`EarlySelector.convergence`, read after the step's selection) and, at a trigger, the
        keys of the modules it removed and the sizes it fixed (``key=size``, ``;``-separated)."""
        state = selector.state
        keys = [d.key for d in run.space.dims()] if event is not None else []
        what = {"removed_keys": ";".join(keys[i] for i in event.removed),
                "fixed_sizes": ";".join(f"{keys[i]}={size}" for i, size in event.fixed)} if event else {}
        return {
            "step": step + 1, "total": run.total, "epoch": run.epoch(step), "phase": "search", "temperature": temp,
            "lr": run.lr(),
            **losses,
            "beta": math.nan if obs.beta is None else obs.beta,
            "triggered": int(event is not None), "triggers": selector.done,
            "reduction": event.reduction if event else math.nan,
            "removed": len(event.removed) if event else 0, "fixed": len(event.fixed) if event else 0,
            "expected_params": obs.expected,
            "active_modules": int(state.kept.sum()), "active_params": selector.active_params(),
            "fixed_modules": int((state.fixed & state.kept & selector.table.sized).sum()),
            **selector.convergence(snap), **what,
            "elapsed_s": run.elapsed(),
        }

    def _export(self, run: SearchSession, selector: EarlySelector, stop_reason: str, steps: int,
                trigger_steps: list[int]) -> SearchResult:
        snap = run.arch.snapshot()
        choices, preferred = selector.export_choices(snap)
        before = sum(run.space.count_at(i, c) for i, c in enumerate(choices))
        arch, fit = run.export(choices, preferred, selector.scores.tolist())
        run.trace.add({
            "step": steps, "epoch": run.epoch(steps - 1), "phase": "export", "stop_reason": stop_reason,
            "triggers": selector.done,
            "removed": len(fit.dropped), "added": len(fit.added), "grown": len(fit.grown),
            "active_modules": len(arch), "active_params": fit.params, "elapsed_s": run.elapsed(),
        }, force_report=True)
        state = selector.state
        return SearchResult(arch, {
            "method": self.name, "stop_reason": stop_reason, "steps": steps, "planned_steps": run.total,
            "triggers": selector.done, "max_triggers": self.config.max_triggers,
            "first_trigger_step": trigger_steps[0] if trigger_steps else None,
            "last_trigger_step": trigger_steps[-1] if trigger_steps else None,
            "removed_modules": int((~state.kept).sum()),
            "fixed_modules": int((state.fixed & state.kept & selector.table.sized).sum()),
            "export": fit_summary(run.space, fit, before), "params": fit.params, "budget": run.ctx.budget,
            "code_compat": self.config.code_compat, "search_time_s": run.elapsed(),
            **run.save_trace(self.name),
        })
