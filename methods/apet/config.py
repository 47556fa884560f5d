"""APET's options."""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, check_positive_ints, option
from methods.apet.draw import SIZE_RULES
from methods.blackbox import BlackBoxConfig


@dataclass(frozen=True)
class APETConfig(BlackBoxConfig):
    """Options of :class:`~methods.apet.method.APET` (plus the proxy fidelity used when ``candidates > 1``)."""

    candidates: int = option(1, "1: one random draw per seed, as APET; n > 1: the best of n draws by proxy "
                                "validation (a random-search baseline)")
    delta_share: float = option(0.5, "the sized ops' share of the budget when the space also has size-less "
                                     "ops (APET: 50/50 between delta modules and backbone tensors)")
    sizes: str = option("any", "'any': every size of a module can be drawn, the first that fits claims it; "
                               "'largest': only each module's largest size (APET's modules have one size)")
    refill: bool = option(True, "offer what both halves leave to every module still absent (nothing else "
                                "fits afterwards); False: APET's code, each half on its own")
    max_concurrent: int = option(1, "draws proxy-trained in parallel (candidates > 1)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "max_concurrent")
        check(0 <= self.delta_share <= 1, f"delta_share must be in [0, 1], got {self.delta_share!r}")
        check(self.sizes in SIZE_RULES, f"unknown sizes {self.sizes!r}; valid: {', '.join(SIZE_RULES)}")

    def concurrency(self) -> int:
        return self.max_concurrent
