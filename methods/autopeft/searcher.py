"""AutoPEFT's multi-objective BO as a Ray Tune ``Searcher``.

Each ``suggest`` returns one candidate: one of ``n_init`` random designs first, then the maximiser
of the acquisition function given every finished observation and every pending candidate
(:mod:`methods.autopeft.bo`). Inside a ``ConcurrencyLimiter(max_concurrent=q)`` this gives the
authors' rounds of q candidates asynchronously: the first q suggestions of a round are chosen
greedily with the earlier ones pending (as the authors' sequential ``X_pending`` loop), and each
later completion frees one slot that is refilled with the others pending. The fitted surrogate is
reused until a new observation arrives, so a round of q suggestions fits it once.

Failed trials (``error=True``, no result, a missing or non-finite score) are recorded and kept out
of the model; their designs are never proposed again. If fewer than two observations are usable,
or the surrogate cannot be fitted (BoTorch's ``ModelFittingError``), the searcher falls back to a
random design and counts it in :attr:`AutoPEFTSearcher.fallbacks`.

BoTorch runs single-threaded inside ``suggest`` (``torch.set_num_threads(1)``, restored afterwards):
its many small linear-algebra calls run faster without torch's thread pool, and a searcher on the
driver leaves the cores to the trials.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray.tune.search import Searcher

from methods.autopeft import bo
from methods.autopeft.config import AutoPEFTConfig
from methods.autopeft.encoding import Design, make_encoding
from methods.base import SCORE, SearchProblem, finite
from methods.blackbox import PickledState

logger = logging.getLogger(__name__)

STATE_VERSION = 1
MIN_OBSERVATIONS = 2  # fewer usable observations than this: a random candidate instead of BO


@dataclass(frozen=True)
class Observation:
    """A finished candidate: its design, validation score, parameter ratio/count and outcome."""

    trial_id: str
    design: Design
    score: float
    ratio: float
    params: int
    status: str  # "ok", "error" (the trial failed) or "nan" (no finite score)
    source: str = "init"  # how it was proposed: "init", "bo" or "random" (a fallback)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@contextlib.contextmanager
def single_thread():
    """Run BoTorch on one thread, then restore the caller's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class AutoPEFTSearcher(PickledState, Searcher):
    """Multi-objective BO over PEFT architectures: validation score up, parameter ratio down.

    Args:
        problem: the search space (its analytic parameter count prices every design), the parameter
            budget (with ``budget_mode="constrain"`` no candidate exceeds it) and the seed (of the
            initial design, the local search and the QMC sampler).
        config: the method's options.
        metric: the result key of the first objective (the validation score).
        mode: ``"max"`` or ``"min"`` for ``metric``. The ratio (``RATIO``) is always minimised.
    """

    def __init__(self, problem: SearchProblem, config: AutoPEFTConfig | None = None, metric: str = SCORE,
                 mode: str = "max") -> None:
        super().__init__(metric=metric, mode=mode)
        space, budget, seed = problem.space, int(problem.budget), int(problem.seed)
        self.space, self.budget, self.seed = space, budget, seed
        self.config = config or AutoPEFTConfig()
        if self.config.surrogate == "saas":
            bo.require_nuts()  # fail now, not after the initial design has been trained
        self.encoding = make_encoding(space, self.config.space_form)
        self.backbone_params = space.sites.backbone_params
        self._constrained = self.config.budget_mode == "constrain"
        self.encoding.sample(np.random.default_rng(seed), budget)  # a clear error if nothing fits
        self._rng = np.random.default_rng(seed)
        self._observations: list[Observation] = []
        self._pending: dict[str, tuple[Design, str]] = {}  # trial id -> (design, source)
        self._suggested = 0
        self._sobol_used = 0
        self.fallbacks = 0
        self._model_cache: tuple[int, Any, bo.Copula | None] | None = None

    # ---- Ray Tune protocol -------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        """Take the Tuner's metric/mode if none were given; the space is fixed at construction, so a
        ``param_space`` passed to the Tuner is ignored (its keys are overwritten by suggestions)."""
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, int] | str | None:
        with single_thread():
            design, source = self._next_design()
        if design is None:
            logger.warning("AutoPEFT found no new architecture to propose after %d candidates: finished",
                           self._suggested)
            return Searcher.FINISHED
        self._pending[trial_id] = (design, source)
        self._suggested += 1
        return self.encoding.config(design)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._pending:
            return  # not ours, or completed twice
        design, source = self._pending.pop(trial_id)
        params = self.encoding.params(design)  # analytic: equals the harness's count of the trial
        score = (result or {}).get(self._metric)
        status = "error" if error or result is None else ("ok" if finite(score) else "nan")
        self._observations.append(Observation(
            trial_id=trial_id, design=design, score=float(score) if status == "ok" else math.nan,
            ratio=params / self.backbone_params, params=params, status=status, source=source,
        ))

    # ---- state ---------------------------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        return {"space": self.space.name, "dims": len(self.space), "form": self.encoding.form,
                "budget": self.budget, "seed": self.seed}

    def get_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "fingerprint": self._fingerprint(),
            "metric": self._metric, "mode": self._mode,
            "observations": list(self._observations), "pending": dict(self._pending),
            "suggested": self._suggested, "sobol_used": self._sobol_used, "fallbacks": self.fallbacks,
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"AutoPEFT searcher state version {state.get('version')!r}; expected {STATE_VERSION}")
        if state["fingerprint"] != self._fingerprint():
            raise ValueError(f"the saved AutoPEFT search was over {state['fingerprint']}, "
                             f"this searcher is over {self._fingerprint()}")
        self._metric, self._mode = state["metric"], state["mode"]
        self._observations = list(state["observations"])
        self._pending = dict(state["pending"])
        self._suggested, self._sobol_used = state["suggested"], state["sobol_used"]
        self.fallbacks = state["fallbacks"]
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]
        self._model_cache = None


    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model_cache"] = None  # a fitted GP is cheap to refit and heavy to ship
        return state

    # ---- inspection ----------------------------------------------------------------------------------
    @property
    def observations(self) -> list[Observation]:
        return list(self._observations)

    @property
    def pending(self) -> dict[str, Design]:
        return {trial_id: design for trial_id, (design, _) in self._pending.items()}

    def pareto(self) -> list[Observation]:
        """The usable observations not dominated in (score up, ratio down)."""
        ok = [o for o in self._observations if o.ok]
        if not ok:
            return []
        mask = bo.pareto_mask(self._objectives(ok))
        return [o for o, keep in zip(ok, mask.tolist()) if keep]

    # ---- proposals -----------------------------------------------------------------------------------
    def _seen(self) -> set[Design]:
        return {o.design for o in self._observations} | {design for design, _ in self._pending.values()}

    def _budget(self) -> int | None:
        return self.budget if self._constrained else None

    def _objectives(self, obs: list[Observation]) -> torch.Tensor:
        sign = 1.0 if self._mode == "max" else -1.0
        return torch.tensor([[sign * o.score, -o.ratio] for o in obs], dtype=torch.double)

    def _next_design(self) -> tuple[Design | None, str]:
        if self._suggested < self.config.n_init:
            return self._initial_design(), "init"
        ok = [o for o in self._observations if o.ok]
        if len(ok) < MIN_OBSERVATIONS:
            self.fallbacks += 1
            return self._random_design(), "random"
        try:
            return self._bo_design(ok), "bo"
        except _fitting_errors() as e:
            logger.warning("AutoPEFT could not fit its surrogate (%s); proposing a random candidate", e)
            self.fallbacks += 1
            return self._random_design(), "random"

    def _random_design(self) -> Design | None:
        seen = self._seen()
        for _ in range(1000):
            v = self.encoding.sample(self._rng, self._budget())
            if v not in seen:
                return v
        return None

    def _initial_design(self) -> Design | None:
        if self.config.init == "sample":
            return self._random_design()
        from torch.quasirandom import SobolEngine

        seen = self._seen()
        engine = SobolEngine(len(self.encoding), scramble=True, seed=self.seed)
        engine.fast_forward(self._sobol_used)
        for _ in range(1000):
            u = engine.draw(1, dtype=torch.double)[0].tolist()
            self._sobol_used += 1
            v = self.encoding.from_unit(u)
            if self._constrained and self.encoding.params(v) > self.budget:
                v = self.encoding.repair(v, self._rng, self.budget)
            if v is not None and self.encoding.params(v) > 0 and v not in seen:
                return v
        return self._random_design()

    def _bo_design(self, ok: list[Observation]) -> Design | None:
        X = self.encoding.encode([o.design for o in ok])
        Y = self._objectives(ok)
        ref_ratio = self.config.ref_ratio if self.config.ref_ratio is not None else self.budget / self.backbone_params
        ref = bo.reference_point(Y, self.config.ref_score, -ref_ratio)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed + self._suggested)
            if self._model_cache is None or self._model_cache[0] != len(ok):
                copula = bo.Copula.fit(Y) if self.config.copula else None
                model = bo.fit_surrogate(X, copula(Y) if copula else Y, self.config)
                self._model_cache = (len(ok), model, copula)
            _, model, copula = self._model_cache
            pending = [design for design, _ in self._pending.values()]
            acqf = bo.acquisition(
                model, copula(ref) if copula else ref, X_baseline=X,
                X_pending=self.encoding.encode(pending) if pending else None,
                cfg=self.config, seed=self.seed + self._suggested,
            )
            front = [o.design for o, keep in zip(ok, bo.pareto_mask(Y).tolist()) if keep]  # as pareto()
            return bo.local_search(bo.batched_scorer(acqf, self.encoding), self.encoding,
                                   front, self._seen(), self._rng,
                                   self._budget(), self.config)


def _fitting_errors() -> tuple[type[Exception], ...]:
    from botorch.exceptions.errors import ModelFittingError

    return (ModelFittingError,)
