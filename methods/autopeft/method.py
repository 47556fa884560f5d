"""AutoPEFT: multi-objective Bayesian optimisation of PEFT configurations.

Zhou, Wan, Vulić, Korhonen, "AutoPEFT: Automatic Configuration Search for Parameter-Efficient
Fine-Tuning", TACL 2024; code ``cambridgeltl/autopeft`` (methods.md §4).

What it implements: candidates are architectures of the space, each proxy-trained as its own Ray
Tune trial; a Ray ``Searcher`` (:class:`~methods.autopeft.searcher.AutoPEFTSearcher`) proposes them
by BO over two objectives, the validation metric (max) and the trainable-parameter ratio (min),
with one GP per objective and the noisy expected hypervolume improvement (qNEHVI; Daulton et al.,
2021) optimised by local search from the Pareto set (§3 of the paper; ``adapterhub/bo/models.py``).
After ``n_init`` random candidates, the rest come in rounds of q = 4.

Deviations from the paper and the authors' code (each behind an option where both are useful):

* **Budget.** The paper searches the whole Pareto front and reports every Pareto point; the suite
  compares methods at one budget. By default (``budget_mode="constrain"``) every candidate fits
  the budget: the initial design, the local search (neighbours are repaired by stepping other
  modules down) and the random pool are all restricted to it, so no proxy training is spent on
  architectures that cannot be selected. The ratio's reference point defaults to the budget, so
  hypervolume only counts candidates within it. ``budget_mode="free"`` is the paper's search;
  :meth:`AutoPEFT.select` then still returns only a candidate within the budget.
* **Result.** The best-validation candidate within the budget, with the whole Pareto set in the
  record (the authors retrain every Pareto point with 5 seeds; the suite's retrain stage retrains
  the one selected).
* **Surrogate.** Default ``gp`` (Matern-5/2 SingleTaskGP, the authors' ``--base_model gp``)
  instead of the paper's SAAS GP (``surrogate="saas"``, NUTS with the authors' 128/64/4
  settings; BoTorch runs NUTS on NumPyro/JAX). ``saas_map`` is BoTorch's MAP-SAAS ensemble, a
  NUTS-free approximation not in the paper.
* **Acquisition.** qLogNEHVI by default (``acquisition="qnehvi"`` for the paper's qNEHVI). The
  local search also scores a random pool of valid architectures (``random_pool``), and keeps the
  best design seen anywhere, not only the climbs' end points.
* **Reference point.** The authors fix ``[26 % params, 0.70 metric]`` for every task. Here the
  ratio's reference is the budget and the score's is inferred from the Pareto front each round
  unless ``ref_ratio`` / ``ref_score`` are given.
* **Space.** By default ``space_form="shared_sizes"``: AutoPEFT's own form (one size per op type
  plus a switch per layer) with the suite's sizes; ``"per_layer"`` searches the suite's space
  module by module (S1 per layer, as BIPEFT's S1), and its rows are labelled; see
  :mod:`methods.autopeft.encoding`.
* **Fidelity.** The paper advertises low-fidelity proxies but its code only keeps a commented-out
  1 % subsample (methods.md §4.3); the proxy settings (``train_fraction``, ``max_train_samples``,
  ``max_steps``, ``epochs``) default to the harness's full training and are for the run config to
  set. The authors' 1e-4 Gaussian jitter on the objectives is not reproduced. ``scheduler="asha"``
  stops weak candidates early (multi-fidelity, not in the authors' code; rows labelled "ASHA", see
  :mod:`methods.blackbox`): the GP then observes a stopped candidate's last-rung score as its score.
"""

from __future__ import annotations

from methods.autopeft.config import AutoPEFTConfig
from methods.autopeft.searcher import AutoPEFTSearcher
from methods.base import SCORE, BlackBoxMethod, SearchProblem
from methods.blackbox import ParetoSelect


class AutoPEFT(ParetoSelect, BlackBoxMethod):
    """AutoPEFT (Zhou et al., TACL 2024): multi-objective BO over architectures (see the module docstring)."""

    name = "autopeft"
    label = "AutoPEFT"
    paper = "Zhou et al., AutoPEFT: Automatic Configuration Search for Parameter-Efficient Fine-Tuning, TACL 2024"
    Config = AutoPEFTConfig

    def authors_recipe(self) -> dict[str, dict]:
        # adapter-transformers' AutoPEFTConfig: ReLU adapters, the parallel one scaled by 4 (methods.md §4.1)
        return {"adapter_serial": {"activation": "relu"}, "adapter_parallel": {"activation": "relu", "scaling": 4.0}}

    def settings(self) -> list[str]:
        return (["per-layer space"] if self.config.space_form == "per_layer" else []) + super().settings()

    def make_searcher(self, problem: SearchProblem, metric: str = SCORE, mode: str = "max") -> AutoPEFTSearcher:
        return AutoPEFTSearcher(problem, self.config, metric=metric, mode=mode)
