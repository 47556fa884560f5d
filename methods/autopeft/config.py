"""AutoPEFT's options. Defaults follow the authors' code (``cambridgeltl/autopeft``, methods.md §4)
except where a field's help says otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, option
from methods.autopeft.encoding import SPACE_FORMS
from methods.blackbox import BlackBoxConfig

SURROGATES = ("gp", "saas", "saas_map")
ACQUISITIONS = ("qlognehvi", "qnehvi")
INITS = ("sample", "sobol")
BUDGET_MODES = ("constrain", "free")


@dataclass(frozen=True)
class AutoPEFTConfig(BlackBoxConfig):
    """Options of :class:`~methods.autopeft.method.AutoPEFT` (plus the proxy fidelity of each candidate)."""

    candidates: int = option(200, "candidates proxy-trained in all (the authors' run.sh: -mi 200)")
    n_init: int = option(100, "random initial candidates before the BO rounds (run.sh: -ni 100)")
    q: int = option(4, "candidates trained in parallel; each is proposed with the others pending (batch 4)")
    space_form: str = option("shared_sizes", "'shared_sizes': AutoPEFT's own form, one size per op + a switch per "
                                             "layer; 'per_layer': a size per module of the space (S1 as given)")
    init: str = option("sample", "initial design: 'sample' (random architectures, as the authors' code) or "
                                 "'sobol' (a scrambled Sobol sequence over the choices)")
    budget_mode: str = option("constrain", "'constrain': only propose candidates within the budget (initial "
                                           "design, local search and random pool); 'free': the paper's "
                                           "unconstrained Pareto search (select still returns a fitting one)")
    surrogate: str = option("gp", "'gp': Matern-5/2 SingleTaskGP per objective; 'saas': the paper's SAAS fully "
                                  "Bayesian GP fitted with NUTS (needs numpyro + jax); 'saas_map': BoTorch's "
                                  "MAP-SAAS ensemble, a NUTS-free stand-in")
    ard: bool = option(False, "gp: one lengthscale per dimension (the authors' code shares one)")
    copula: bool = option(True, "normal-copula (ECDF) transform of the objectives, as the authors' code; "
                                "False: standardise them")
    acquisition: str = option("qlognehvi", "'qlognehvi' (BoTorch's numerically robust form) or 'qnehvi' (the "
                                           "paper's)")
    ref_score: float | None = option(None, "reference point of the validation score (x100); None: inferred "
                                           "from the observed Pareto front (nadir - 10% of its range)")
    ref_ratio: float | None = option(None, "reference point of the parameter ratio; None: the budget's ratio "
                                           "(only candidates within the budget add hypervolume)")
    mc_samples: int = option(128, "quasi-MC samples of the acquisition function")
    n_restarts: int = option(10, "local-search starts, each a neighbour of a Pareto point (authors: 10)")
    max_evals: int = option(2000, "acquisition evaluations shared by the local searches (authors: 2000)")
    n_neighbors: int | None = option(None, "neighbours drawn per local-search step (None: min(dims, 20); "
                                           "the authors draw one per dimension of their 15-27-dim space)")
    random_pool: int = option(500, "random valid architectures also scored by the acquisition function")
    nuts_warmup: int = option(128, "saas: NUTS warm-up steps (authors: 128)")
    nuts_samples: int = option(64, "saas: NUTS samples (authors: 64)")
    nuts_thinning: int = option(4, "saas: keep every k-th NUTS sample (authors: 4)")
    saas_taus: int = option(4, "saas_map: ensemble members (global shrinkage values)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_init", "q", "mc_samples", "n_restarts", "max_evals", "nuts_warmup",
                     "nuts_samples", "nuts_thinning", "saas_taus"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                  f"{name} must be a positive int, got {value!r}")
        check(isinstance(self.random_pool, int) and self.random_pool >= 0,
              f"random_pool must be an int >= 0, got {self.random_pool!r}")
        check(self.n_neighbors is None or (isinstance(self.n_neighbors, int) and self.n_neighbors >= 1),
              f"n_neighbors must be a positive int or None, got {self.n_neighbors!r}")
        check(self.n_init <= self.candidates, f"n_init ({self.n_init}) cannot exceed candidates ({self.candidates})")
        check(self.nuts_thinning <= self.nuts_samples,
              f"nuts_thinning ({self.nuts_thinning}) cannot exceed nuts_samples ({self.nuts_samples})")
        for name, valid in (("space_form", SPACE_FORMS), ("init", INITS), ("budget_mode", BUDGET_MODES),
                            ("surrogate", SURROGATES), ("acquisition", ACQUISITIONS)):
            value = getattr(self, name)
            check(value in valid, f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        check(self.ref_ratio is None or self.ref_ratio > 0, f"ref_ratio must be > 0, got {self.ref_ratio!r}")

    def concurrency(self) -> int:
        return self.q  # AutoPEFT's rounds of q candidates, each proposed with the others pending
