"""The options of AdaLoRA as a budgeted search (defaults: the authors' MNLI script).

The defaults come from the GLUE scripts of the AdaLoRA repository (QingruZhang/AdaLoRA,
``NLU/scripts/run_debertav3_mnli.sh``: ``--target_rank 1 --lora_r 3 --reg_orth_coef 0.1
--init_warmup 8000 --final_warmup 50000 --mask_interval 100 --beta1 0.85 --beta2 0.85 --lora_alpha 16
--weight_decay 0``, every linear of a layer adapted). Its schedule is in steps of a run of
``REFERENCE_STEPS`` = 7 epochs x 12,272 batches of 32 (MNLI's 392,702 training examples);
:meth:`AdaLoRAConfig.schedule` scales the three step counts by ``planned / reference_steps``, so a
run of any length keeps the authors' proportions: 9.3 % warm-up at the full rank, 58.2 % final
fine-tuning at the target rank, the cubic decrease in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, check_positive_ints, option
from spaces.s2 import LINEARS

REFERENCE_STEPS = 7 * 12_272  # the MNLI script: 7 epochs of ceil(392,702 / 32) batches


@dataclass(frozen=True)
class Schedule:
    """AdaLoRA's budget schedule in a run's steps (peft's ``total_step``, ``tinit``, ``tfinal``, ``deltaT``)."""

    total_step: int
    tinit: int
    tfinal: int
    deltaT: int

    @property
    def final_step(self) -> int:
        """The step of the final allocation (peft masks to the target rank there, then keeps it)."""
        return self.total_step - self.tfinal


@dataclass(frozen=True)
class AdaLoRAConfig:
    """AdaLoRA settings: peft's ``AdaLoraConfig`` fields, with the budget derived from the run's."""

    init_r: int = option(0, "initial rank of every targeted matrix (peft init_r, the authors' --lora_r); 0: "
                            "init_ratio x the average target rank the budget allows, rounded up")
    init_ratio: float = option(3.0, "init_r / average target rank when init_r is 0 (the authors' MNLI and CoLA "
                                    "scripts: --lora_r 3 for --target_rank 1; SST-2: 2)")
    tinit: int = option(8000, "warm-up steps at the initial rank before the budget falls (peft tinit; the MNLI "
                              "script's --init_warmup 8000), in steps of a reference_steps run: scaled to the "
                              "run's planned steps")
    tfinal: int = option(50000, "final fine-tuning steps at the target rank (peft tfinal; MNLI: --final_warmup "
                                "50000), scaled like tinit")
    deltaT: int = option(100, "steps between two rank allocations (peft deltaT; MNLI: --mask_interval 100), "
                              "scaled like tinit, at least 1")
    reference_steps: int = option(REFERENCE_STEPS, "the length of the run tinit, tfinal and deltaT are given for "
                                                   "(MNLI: 7 epochs x 12,272 batches of 32 = 85,904 steps)")
    beta1: float = option(0.85, "EMA factor of the sensitivity (peft beta1; paper Eq. 8; the scripts' --beta1)")
    beta2: float = option(0.85, "EMA factor of the uncertainty (peft beta2; paper Eq. 9; the scripts' --beta2)")
    orth_reg_weight: float = option(0.1, "weight of the orthogonality regulariser of P and Q (paper Eq. 4; every "
                                         "GLUE script's --reg_orth_coef 0.1; peft's default is 0.5)")
    lora_alpha: int = option(16, "peft lora_alpha: AdaLoRA's own training scales P diag(E) Q by "
                                 "lora_alpha / init_r (MNLI and SST-2 scripts: 16; CoLA: 32); the retrain uses "
                                 "the run's recipe instead")
    target_modules: tuple[str, ...] = option(
        LINEARS, "canonical positions of the adapted linears (spaces.sites maps them to each family's modules: "
                 "BERT query/key/value/attention.output.dense/intermediate.dense/output.dense, T5 q/k/v/o/wi/"
                 "wi_0/wi_1/wo, Llama q/k/v/o/gate/up/down_proj); the scripts adapt every linear of a layer")
    budget_fill: float = option(0.9, "the total target rank K = floor(budget_fill x B / mean cost of a rank-1 "
                                     "LoRA over the targeted linears): which linears win the ranks is unknown "
                                     "before training, so K aims at the middle of the window [0.8 B, B]")
    weight_decay: float = option(0.0, "AdamW weight decay of the AdaLoRA weights (MNLI script: 0)")
    grad_clip: float = option(1.0, "gradient-norm clipping (0: off; the scripts' HF Trainer default max_grad_norm 1.0)")
    report_every: int = option(10, "send every N-th trace row to the context's report callback")

    def __post_init__(self) -> None:
        check_positive_ints(self, "init_r", minimum=0)
        check_positive_ints(self, "tinit", "tfinal", minimum=0)
        check_positive_ints(self, "deltaT", "reference_steps", "lora_alpha", "report_every")
        check(self.init_ratio >= 1, f"init_ratio must be >= 1, got {self.init_ratio}")
        check(self.tinit + self.tfinal < self.reference_steps,
              f"tinit + tfinal ({self.tinit} + {self.tfinal}) must be < reference_steps ({self.reference_steps}): "
              "the budget must have steps to fall")
        for name in ("beta1", "beta2"):
            check(0 < getattr(self, name) < 1, f"{name} must be in (0, 1), got {getattr(self, name)}")
        check(self.orth_reg_weight >= 0, f"orth_reg_weight must be >= 0, got {self.orth_reg_weight}")
        check(0 < self.budget_fill <= 1, f"budget_fill must be in (0, 1], got {self.budget_fill}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0: off), got {self.grad_clip}")
        bad = [p for p in self.target_modules if p not in LINEARS]
        check(bool(self.target_modules) and not bad and len(set(self.target_modules)) == len(self.target_modules),
              f"target_modules must be distinct positions among {', '.join(LINEARS)}, got {self.target_modules!r}")

    def schedule(self, steps: int) -> Schedule:
        """``tinit``, ``tfinal`` and ``deltaT`` scaled from ``reference_steps`` to a run of ``steps``.

        Each is ``round(value * steps / reference_steps)`` (``deltaT`` at least 1). A short run is
        clamped so that the schedule keeps a step of importance scores before the final allocation
        (peft ranks by them there) and a budget phase: ``tfinal <= steps - 2``, ``tinit < steps - tfinal``.

        Raises:
            ValueError: ``steps < 2`` (AdaLoRA needs a scored step before it allocates).
        """
        if steps < 2:
            raise ValueError(f"AdaLoRA needs at least 2 planned steps (one to score, one to allocate), got {steps}")
        scale = steps / self.reference_steps
        tfinal = min(round(self.tfinal * scale), steps - 2)
        tinit = min(round(self.tinit * scale), steps - tfinal - 1)
        return Schedule(steps, tinit, tfinal, max(1, round(self.deltaT * scale)))
