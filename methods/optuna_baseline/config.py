"""Options of the optuna baseline."""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, check_positive_ints, option
from methods.blackbox import BlackBoxConfig

SAMPLERS = ("nsga2", "tpe")


@dataclass(frozen=True)
class OptunaConfig(BlackBoxConfig):
    """Options of :class:`~methods.optuna_baseline.method.OptunaBaseline` (plus the proxy fidelity)."""

    sampler: str = option("nsga2", "'nsga2' (NSGAIISampler) or 'tpe' (multi-objective TPESampler)")
    candidates: int = option(100, "candidates proxy-trained in all")
    max_concurrent: int = option(4, "candidates trained in parallel")
    population_size: int = option(50, "nsga2: individuals per generation (the first is random)")
    n_startup_trials: int = option(10, "tpe: random trials before the TPE model is used")
    init_within_budget: bool = option(True, "draw the random first generation (nsga2) / startup trials (tpe) "
                                            "within the budget (space.sample); False: uniform over all choices, "
                                            "which rarely fits a small budget")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "max_concurrent", "n_startup_trials")
        check(isinstance(self.population_size, int) and self.population_size >= 2,
              f"population_size must be an int >= 2, got {self.population_size!r}")
        check(self.sampler in SAMPLERS, f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")

    def concurrency(self) -> int:
        return self.max_concurrent
