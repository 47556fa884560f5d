"""One BO step of AutoPEFT: fit a surrogate per objective, build qLogNEHVI, optimise it over designs.

Objectives are maximised: ``Y = [score, -ratio]``. Following the authors' ``adapterhub/bo/models.py``:

* one GP per objective in a ``ModelListGP``: a Matern-5/2 ``SingleTaskGP`` (one shared
  lengthscale, noise prior Gamma(0.9, 10) constrained to [1e-7, 1e-3]), or the SAAS fully
  Bayesian GP fitted with NUTS, or BoTorch's MAP-SAAS ensemble (a NUTS-free stand-in, not in
  the paper);
* a normal-copula transform of each objective (empirical CDF, then the standard normal quantile,
  clamped to [1e-4, 1 - 1e-4]); the reference point goes through the same transform;
* qNEHVI with ``prune_baseline``; we default to its log form qLogNEHVI (Ament et al., 2023), whose
  values do not vanish when the improvement is tiny, which matters for a discrete local search
  that compares raw acquisition values;
* the acquisition is maximised by local search: ``n_restarts`` starts, each a neighbour of a
  random Pareto point, hill-climb over random one-exchange neighbours until ``max_evals`` are
  spent. We also score a pool of random valid designs and keep the best design seen anywhere.
  Pending candidates enter as ``X_pending`` (NEHVI samples them jointly with the candidate), so
  q suggestions made in a row differ; designs already observed or pending are never proposed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from methods.autopeft.config import AutoPEFTConfig
from methods.autopeft.encoding import Design, Encoding

COPULA_CLAMP = 1e-4
EVAL_CHUNK = 256


class MissingNUTS(ImportError):
    """The SAAS GP needs NUTS, which BoTorch runs on NumPyro/JAX."""


def require_nuts() -> None:
    """Raise :class:`MissingNUTS` (saying what to install) unless NumPyro and JAX import."""
    try:
        import jax  # noqa: F401
        import numpyro  # noqa: F401
    except ImportError:
        raise MissingNUTS(
            "surrogate='saas' fits the SAAS GP with NUTS, which BoTorch runs on NumPyro/JAX: "
            "pip install -c constraints.txt -e '.[saas]' (or use surrogate='saas_map', which needs neither)"
        ) from None


@dataclass
class Copula:
    """Per-objective empirical CDF of the observations, mapped through the normal quantile."""

    sorted_y: Tensor  # (n, m), each column sorted

    @classmethod
    def fit(cls, Y: Tensor) -> Copula:
        return cls(torch.sort(Y, dim=0).values)

    def __call__(self, Y: Tensor) -> Tensor:
        n = self.sorted_y.shape[0]
        cols = []
        for j in range(self.sorted_y.shape[1]):
            rank = torch.searchsorted(self.sorted_y[:, j].contiguous(), Y[..., j].contiguous(), right=True)
            cols.append((rank.to(Y) / n).clamp(COPULA_CLAMP, 1 - COPULA_CLAMP))
        return torch.distributions.Normal(0.0, 1.0).icdf(torch.stack(cols, dim=-1))


def fit_surrogate(X: Tensor, Y: Tensor, cfg: AutoPEFTConfig):
    """A fitted ``ModelListGP`` with one model per column of ``Y`` (already in model space)."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import ModelListGP, SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.constraints import Interval
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.priors import GammaPrior

    models = []
    for j in range(Y.shape[-1]):
        y = Y[:, j:j + 1]
        transform = None if cfg.copula else Standardize(m=1)
        if cfg.surrogate == "gp":
            model = SingleTaskGP(
                X, y, outcome_transform=transform,
                covar_module=ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=X.shape[-1] if cfg.ard else None)),
                likelihood=GaussianLikelihood(noise_prior=GammaPrior(0.9, 10.0),
                                              noise_constraint=Interval(1e-7, 1e-3)),
            )
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        elif cfg.surrogate == "saas":
            from botorch.fit import fit_fully_bayesian_model_nuts
            from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

            require_nuts()
            model = SaasFullyBayesianSingleTaskGP(X, y, outcome_transform=transform)
            fit_fully_bayesian_model_nuts(model, warmup_steps=cfg.nuts_warmup, num_samples=cfg.nuts_samples,
                                          thinning=cfg.nuts_thinning, disable_progbar=True)
        else:
            from botorch.models.map_saas import EnsembleMapSaasSingleTaskGP

            model = EnsembleMapSaasSingleTaskGP(X, y, num_taus=cfg.saas_taus, outcome_transform=transform)
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        models.append(model)
    return ModelListGP(*models)


def pareto_mask(Y: Tensor) -> Tensor:
    from botorch.utils.multi_objective.pareto import is_non_dominated

    return is_non_dominated(Y)


def reference_point(Y: Tensor, ref_score: float | None, ref_neg_ratio: float) -> Tensor:
    """``[score, -ratio]`` reference: the given score or one inferred from the Pareto front of ``Y``."""
    from botorch.utils.multi_objective.hypervolume import infer_reference_point

    if ref_score is None:
        ref_score = float(infer_reference_point(Y[pareto_mask(Y)])[0])
    return torch.tensor([ref_score, ref_neg_ratio], dtype=Y.dtype)


def acquisition(model, ref_point: Tensor, X_baseline: Tensor, X_pending: Tensor | None,
                cfg: AutoPEFTConfig, seed: int):
    """qLogNEHVI (or qNEHVI) over the baseline, with pending points, on a seeded QMC sampler."""
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.acquisition.multi_objective.monte_carlo import qNoisyExpectedHypervolumeImprovement
    from botorch.sampling import SobolQMCNormalSampler

    cls = qLogNoisyExpectedHypervolumeImprovement if cfg.acquisition == "qlognehvi" else \
        qNoisyExpectedHypervolumeImprovement
    return cls(model=model, ref_point=ref_point.tolist(), X_baseline=X_baseline, X_pending=X_pending,
               prune_baseline=True, sampler=SobolQMCNormalSampler(torch.Size([cfg.mc_samples]), seed=seed))


def local_search(score: Callable[[list[Design]], Tensor], enc: Encoding, pareto: list[Design],
                 seen: set[Design], rng: np.random.Generator, budget: int | None,
                 cfg: AutoPEFTConfig) -> Design | None:
    """The best design found by local search from the Pareto set plus a random pool (None: none new).

    Args:
        score: acquisition values of a list of designs.
        enc: the encoding (moves and budget).
        pareto: the observed Pareto designs the starts are drawn around.
        seen: designs never to propose (observed or pending).
        rng: the searcher's generator.
        budget: if set, every candidate fits it.
        cfg: ``n_restarts``, ``max_evals``, ``n_neighbors``, ``random_pool``.
    """
    taken = set(seen)

    def fresh(v: Design | None) -> bool:
        if v is None or v in taken:
            return False
        taken.add(v)
        return True

    def draw(make: Callable[[], Design | None], n: int, tries: int) -> list[Design]:
        out: list[Design] = []
        for _ in range(tries):
            if len(out) >= n:
                break
            v = make()
            if fresh(v):
                out.append(v)
        return out

    def random_design() -> Design | None:
        try:
            return enc.sample(rng, budget)
        except ValueError:
            return None

    starts = draw(lambda: enc.neighbour(pareto[int(rng.integers(len(pareto)))], rng, budget),
                  cfg.n_restarts, 100 * cfg.n_restarts) if pareto else []
    starts += draw(random_design, cfg.n_restarts - len(starts), 100 * cfg.n_restarts)
    pool = draw(random_design, cfg.random_pool, 10 * cfg.random_pool)
    candidates = starts + pool
    if not candidates:
        return None
    values = score(candidates)
    best_i = int(torch.argmax(values))
    best, best_value = candidates[best_i], float(values[best_i])

    current = list(starts)
    current_values = [float(v) for v in values[:len(starts)]]
    n_neighbors = cfg.n_neighbors or min(len(enc), 20)
    evals_left = [cfg.max_evals // max(1, len(starts))] * len(starts)
    while any(e > 0 for e in evals_left):
        batch, owner = [], []
        for r, v in enumerate(current):
            if evals_left[r] <= 0:
                continue
            moves = draw(lambda v=v: enc.neighbour(v, rng, budget), min(n_neighbors, evals_left[r]), 5 * n_neighbors)
            if not moves:
                evals_left[r] = 0
                continue
            evals_left[r] -= len(moves)
            batch += moves
            owner += [r] * len(moves)
        if not batch:
            break
        values = score(batch)
        for r in set(owner):
            idx = [i for i, o in enumerate(owner) if o == r]
            i = max(idx, key=lambda i: float(values[i]))
            if float(values[i]) > current_values[r]:
                current[r], current_values[r] = batch[i], float(values[i])
                if current_values[r] > best_value:
                    best, best_value = current[r], current_values[r]
    return best


def batched_scorer(acqf, enc: Encoding) -> Callable[[list[Design]], Tensor]:
    """Acquisition values (q = 1 each) of many designs, in chunks, without gradients."""

    def score(designs: list[Design]) -> Tensor:
        X = enc.encode(designs).unsqueeze(1)
        with torch.no_grad():
            values = torch.cat([acqf(chunk) for chunk in X.split(EVAL_CHUNK)])
        return torch.nan_to_num(values, nan=-math.inf)

    return score
