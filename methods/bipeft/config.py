"""Configs of BIPEFT and its ablations: frozen dataclasses, a help string per field, strict loading.

:class:`SearchConfig` holds what every variant shares (the optimisers, the Gumbel temperature, the
export); :class:`BIPEFTConfig` adds the early-selection hyper-parameters of the paper's sensitivity
tables (Z, γ, H, τ: Tables 6-9) and the ``code_compat`` switch; :class:`StagedConfig` adds the
stage split of the two-stage ablations (b→d, d→b).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.configs import check, check_positive_ints, option
from methods.base import BUDGET_FLOOR

TEMPERATURE_SCHEDULES = ("linear", "epoch", "constant")
BUDGET_COUNTS = ("exported", "expected", "authors")
SENSITIVITY_FORMS = ("trained", "allocated")


@dataclass(frozen=True)
class SearchConfig:
    """What every BIPEFT variant shares."""

    arch_lr: float = option(0.01, "Adam learning rate of the architecture weights Θ, Φ (paper App. B: 0.01)")
    arch_betas: tuple[float, float] = option(
        (0.5, 0.999), "Adam betas of the architecture weights (DARTS' and the authors' (0.5, 0.999))")
    arch_weight_decay: float = option(0.0, "Adam weight decay of the architecture weights (authors' scripts: 1e-4)")
    arch_init_std: float = option(1e-3, "Θ and Φ start as arch_init_std * randn (seeded), as in the authors' code")
    temperature_start: float = option(5.0, "Gumbel-softmax temperature at the first step (authors' code: 5)")
    temperature_end: float = option(1.0, "Gumbel-softmax temperature at the last planned step (authors' code: 1)")
    temperature_schedule: str = option(
        "linear", "'linear': per step, reaching temperature_end when the search is expected to end (BIPEFT: "
                  "after warm-up + H + Z steps, the fewest its triggers need; the ablations: the planned steps); "
                  "'epoch': per epoch, constant within one (the authors' code: 5 - 4 * epoch / epochs); "
                  "'constant': temperature_start throughout")
    weight_decay: float = option(0.0, "AdamW weight decay of the PEFT weights ΔW (authors' scripts: 1e-4)")
    grad_clip: float = option(1.0, "gradient-norm clipping of ΔW (0: off; the authors clip at 2.0)")
    budget_floor: float = option(
        BUDGET_FLOOR, "a removal never takes the kept parameters below budget_floor * B; and if the exported "
             "architecture has fewer, it is filled up (most important absent modules first, then larger sizes) "
             "until it reaches that, never above B")
    report_every: int = option(10, "send every N-th trace row to the context's report callback (Ray's tune.report in a "
                                   "trial: each report is a result Ray logs; the CSV keeps every row)")

    def __post_init__(self) -> None:
        check(self.arch_lr > 0, f"arch_lr must be > 0, got {self.arch_lr}")
        check(len(self.arch_betas) == 2 and all(0 <= b < 1 for b in self.arch_betas),
              f"arch_betas must be two numbers in [0, 1), got {self.arch_betas!r}")
        check(self.arch_weight_decay >= 0, f"arch_weight_decay must be >= 0, got {self.arch_weight_decay}")
        check(self.arch_init_std >= 0, f"arch_init_std must be >= 0, got {self.arch_init_std}")
        check(self.temperature_start > 0 and self.temperature_end > 0,
              f"temperatures must be > 0, got {self.temperature_start} -> {self.temperature_end}")
        check(self.temperature_schedule in TEMPERATURE_SCHEDULES,
              f"unknown temperature_schedule {self.temperature_schedule!r}; valid: {', '.join(TEMPERATURE_SCHEDULES)}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0: off), got {self.grad_clip}")
        check(0 <= self.budget_floor <= 1, f"budget_floor must be in [0, 1], got {self.budget_floor}")
        check_positive_ints(self, "report_every")


@dataclass(frozen=True)
class BIPEFTConfig(SearchConfig):
    """BIPEFT: the shared options plus early selection (paper App. B and Tables 6-9)."""

    max_triggers: int = option(100, "Z: the search ends after this many triggers (paper: 100; Table 6)")
    gamma: float = option(0.85, "γ: EMA factor of the sensitivity, Eq. 4 (paper: 0.85; Table 7)")
    window: int = option(5, "H: the window of the stability β_t, Eq. 5 (paper: 5; Table 8)")
    tau: float = option(0.85, "τ: a trigger fires when β_t >= tau (paper: 0.85; Table 9)")
    code_compat: bool = option(
        False, "reproduce the authors' code where it departs from the paper (methods.md §1.12 items "
               "1-4, 8, 9 and the prune warm-up; never its bugs): see methods.bipeft.method")
    budget_count: str | None = option(
        None, "what E_t (Eq. 7) and the removals R_z count: 'exported' (the parameters of the architecture the "
              "search would export now: kept modules at their fixed or argmax size, so the kept set reaches B at "
              "trigger Z), 'expected' (the paper's Eqs. 7-8 as written: keep probabilities times expected sizes), "
              "'authors' (the code: 'expected', with p_n = b_n for the last 10 triggers); None: 'exported', or "
              "'authors' under code_compat")
    sensitivity: str | None = option(
        None, "what one step's sensitivity (Eqs. 1-3) measures: 'trained' (the ΔW, Θ and Φ passes of a step share "
              "one size draw, and Eq. 2 divides by the parameters that received a gradient: the drawn slice of a "
              "sized module), 'allocated' (each pass draws its own sizes, and Eq. 2 divides by the module's "
              "allocated parameters: its largest size until fixed); None: 'trained'. Not with code_compat, "
              "which has the authors' form (argmax Φ in both passes, always the largest size)")
    warmup_epochs: float | None = option(
        None, "epochs before indicators and Φ history are recorded (the code's prune_begin_epoch); "
              "None: 0 (the paper has no warm-up), or 1 under code_compat (the authors' scripts use 1-4)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "max_triggers", "window")
        check(0 <= self.gamma <= 1, f"gamma (γ) must be in [0, 1], got {self.gamma}")
        check(0 <= self.tau <= 1, f"tau (τ) must be in [0, 1], got {self.tau}")
        check(self.warmup_epochs is None or self.warmup_epochs >= 0,
              f"warmup_epochs must be >= 0 or None, got {self.warmup_epochs}")
        check(self.budget_count is None or self.budget_count in BUDGET_COUNTS,
              f"unknown budget_count {self.budget_count!r}; valid: {', '.join(BUDGET_COUNTS)}")
        check(self.sensitivity is None or self.sensitivity in SENSITIVITY_FORMS,
              f"unknown sensitivity {self.sensitivity!r}; valid: {', '.join(SENSITIVITY_FORMS)}")
        check(self.sensitivity is None or not self.code_compat,
              f"sensitivity={self.sensitivity!r} applies to the paper's step; code_compat has the authors' form: "
              "leave sensitivity unset")

    @property
    def effective_budget_count(self) -> str:
        if self.budget_count is not None:
            return self.budget_count
        return "authors" if self.code_compat else "exported"

    @property
    def effective_sensitivity(self) -> str:
        """'trained' or 'allocated' in paper mode; 'authors' under code_compat."""
        return "authors" if self.code_compat else (self.sensitivity or "trained")

    @property
    def effective_warmup_epochs(self) -> float:
        if self.warmup_epochs is not None:
            return float(self.warmup_epochs)
        return 1.0 if self.code_compat else 0.0


@dataclass(frozen=True)
class StagedConfig(SearchConfig):
    """The two-stage ablations (b→d, d→b): the shared options plus where the first stage ends."""

    stage_split: float = option(
        0.5, "fraction of the planned steps given to the first stage (the paper runs it 'until the model "
             "converges', which it does not define; the second stage gets the rest)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.stage_split < 1, f"stage_split must be in (0, 1), got {self.stage_split}")
