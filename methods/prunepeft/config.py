"""The options of the PrunePEFT re-implementation (methods.md §3)."""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, option
from methods.prunepeft.taylor import ACCUMULATE

SCHEDULES = ("one_shot", "iterative")


@dataclass(frozen=True)
class PrunePEFTConfig:
    """PrunePEFT search settings."""

    schedule: str = option("one_shot", "'one_shot': train the whole supernet, prune once to the budget; "
                           "'iterative': prune in `rounds` rounds on a geometric budget schedule, training in between")
    rounds: int = option(3, "pruning rounds of the iterative schedule (round r keeps F*(B/F)^(r/rounds) of the "
                         "full size F; the last keeps the budget B)")
    accumulate: str = option("abs", "Taylor importance: 'abs' (sum over steps of |theta*g|) or 'signed' "
                             "(|sum over steps of theta*g|)")
    grad_clip: float = option(1.0, "gradient-norm clipping of the PEFT weights (0: off; importance uses raw gradients)")
    weight_decay: float = option(0.0, "AdamW weight decay of the PEFT weights")

    def __post_init__(self) -> None:
        check(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        check(self.accumulate in ACCUMULATE, f"unknown accumulate {self.accumulate!r}; valid: {', '.join(ACCUMULATE)}")
        check(isinstance(self.rounds, int) and not isinstance(self.rounds, bool) and self.rounds >= 1,
              f"rounds must be an int >= 1, got {self.rounds!r}")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
