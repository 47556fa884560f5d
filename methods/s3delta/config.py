"""The options of S3Delta (defaults: the S3PET-M scripts of ``thunlp/S3Delta``; methods.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, option

STRATEGIES = ("shift", "l0")
DARTS = ("first_order", "second_order")


@dataclass(frozen=True)
class S3DeltaConfig:
    """S3Delta search settings."""

    strategy: str = option("shift", "keep probabilities: 'shift' (the shifted global sigmoid whose expected "
                           "size equals the budget) or 'l0' (sigmoid(alpha/beta) plus an L0 penalty)")
    beta: float = option(1.0, "temperature of the sigmoid over the architecture weights")
    shift_detach: bool = option(True, "p <- p / sum(p) * stopgrad(sum(p)) under 'shift' (set in the scripts)")
    hard_forward: bool = option(False, "hard straight-through 0/1 gates instead of soft binary-concrete gates")
    stretch_left: float = option(0.0, "l of the gate stretch s*(r-l)+l (0: no stretch; < 0 for the L0 penalty)")
    stretch_right: float = option(1.0, "r of the gate stretch s*(r-l)+l")
    lambda0: float = option(0.0, "weight of the L0 penalty in the architecture loss (strategy 'l0' only)")
    darts: str = option("second_order", "bi-level update of alpha: 'second_order' (the published method: an unrolled "
                        "virtual AdamW step + a finite-difference Hessian-vector product) or 'first_order' "
                        "(cheaper; its rows are labelled)")
    arch_lr: float = option(0.1, "AdamW learning rate of alpha (linear decay to 0, no weight decay)")
    arch_grad_clip: float = option(2.0, "gradient-norm clipping of alpha (0: off)")
    grad_clip: float = option(2.0, "gradient-norm clipping of the PEFT weights (0: off)")
    weight_decay: float = option(0.0, "AdamW weight decay of the PEFT weights")
    eval_every: int | None = option(None, "validate every N steps and export the best validation checkpoint's "
                                    "alpha (None: once per epoch and at the end; 0: never, use the last alpha)")
    module_size: int = option(1, "the size every sized module is fixed at (S3Delta-M: rank 1); a candidate "
                              "size of the space")
    lora_scaling: float | None = option(None, "LoRA output scaling of the authors' recipe (--retrain-recipe "
                                        "authors: the search's and the retrain's; None: S3Delta's lora_alpha / r "
                                        "= 16 / module_size)")

    def __post_init__(self) -> None:
        check(self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        check(self.darts in DARTS, f"unknown darts {self.darts!r}; valid: {', '.join(DARTS)}")
        for name in ("shift_detach", "hard_forward"):
            check(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.stretch_left <= 0 < 1 <= self.stretch_right,
              f"the stretch must satisfy stretch_left <= 0 and stretch_right >= 1, got "
              f"({self.stretch_left}, {self.stretch_right})")
        check(self.lambda0 >= 0, f"lambda0 must be >= 0, got {self.lambda0}")
        check(self.lambda0 == 0 or self.strategy == "l0",
              f"lambda0={self.lambda0} needs strategy='l0' (the 'shift' strategy enforces the budget itself)")
        check(self.lambda0 == 0 or self.stretch_left < 0,
              f"the L0 penalty needs stretch_left < 0 (it is constant at l = 0), got {self.stretch_left}")
        check(self.arch_lr > 0, f"arch_lr must be > 0, got {self.arch_lr}")
        check(self.arch_grad_clip >= 0, f"arch_grad_clip must be >= 0, got {self.arch_grad_clip}")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.eval_every is None or (isinstance(self.eval_every, int) and not isinstance(self.eval_every, bool)
                                          and self.eval_every >= 0),
              f"eval_every must be None or an int >= 0, got {self.eval_every!r}")
        check(isinstance(self.module_size, int) and not isinstance(self.module_size, bool) and self.module_size >= 1,
              f"module_size must be a positive int, got {self.module_size!r}")
        check(self.lora_scaling is None or self.lora_scaling > 0, f"lora_scaling must be > 0 or None, got {self.lora_scaling}")

    def lora_scale(self) -> float:
        """The LoRA scaling in use (S3Delta: ``lora_alpha / r`` with ``lora_alpha = 16``)."""
        return 16.0 / self.module_size if self.lora_scaling is None else float(self.lora_scaling)
