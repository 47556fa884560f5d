"""BIPEFT's early-selection bookkeeping (Algorithm 1, the lines after the architecture update).

:class:`EarlySelector` keeps, on the CPU, everything the trigger and the selections need: the
smoothed sensitivities ``s_bar`` (Eq. 4), the selection indicators ``b``, ``d``, ``k*``, the
trigger's indicator history (Eq. 5), the Φ window since the last trigger (Eq. 9) and the previous
potential-dimension vector (Eq. 10). Per step the search calls :meth:`update_scores` and
:meth:`observe`; when a trigger fires, :meth:`select` decides which modules to remove and which
dimensions to fix, and the search applies that to the supernet. It never touches a model, so
every decision is testable on small hand-made tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from methods.bipeft.config import BIPEFTConfig
from methods.bipeft.equations import (
    LogitWindow,
    ModuleTable,
    SelectionState,
    dimension_stability,
    expected_params,
    export_sizes,
    lowest,
    module_sizes,
    modules_to_fix_count,
    potential_dimensions,
    reduction,
    select_removals,
    vector_cosine,
)
from methods.bipeft.gates import ArchSnapshot
from methods.bipeft.sensitivity import ema
from methods.bipeft.trigger import StabilityTrigger, importance_indicator

HARD_KEEP_LAST_TRIGGERS = 10  # the authors' code uses p_n = b_n for the last 10 triggers (Eq. 7)


@dataclass
class Observation:
    """One step's view: ``C_n`` (Eq. 8), ``E_t`` (Eq. 7, as ``budget_count`` counts it), ``beta_t``
    (Eq. 5), whether a trigger fired, and what the kept set would export now (each module at its
    fixed or argmax size, and their sum)."""

    sizes: torch.Tensor
    expected: float
    beta: float | None
    fired: bool
    export_sizes: torch.Tensor
    kept_params: float


@dataclass
class Selection:
    """What one trigger decided."""

    reduction: float
    removed: list[int]
    fixed: list[tuple[int, int]] = field(default_factory=list)  # (module, size)
    to_fix: int = 0
    cosine: float = math.nan


class EarlySelector:
    """The state of BIPEFT's budget-guided early selection.

    Args:
        table: the modules' parameter rows ``q_n``.
        budget: ``B``.
        config: Z, γ, H, τ and ``code_compat``.
    """

    def __init__(self, table: ModuleTable, budget: int, config: BIPEFTConfig):
        self.table, self.budget, self.config = table, budget, config
        self.compat = config.code_compat
        self.state = SelectionState.initial(table)
        self.scores = torch.zeros(len(table), dtype=torch.float64)
        self.counts = table.q[:, -1].clone()  # parameters each module trains now (its size once fixed)
        self.trigger = StabilityTrigger(config.window, config.tau, "window" if self.compat else "consecutive")
        self.window = LogitWindow()
        self.previous_dims: torch.Tensor | None = None
        self.done = 0
        self.sized_rows = table.sized.nonzero().squeeze(1)
        self.count = config.effective_budget_count

    @property
    def sensitivity_counts(self) -> torch.Tensor:
        """``|M_n|`` of Eq. 2 read as the module's allocated parameters: its largest size until its
        size is fixed, then that size (``sensitivity="allocated"``); the code: always its largest size."""
        return self.table.q[:, -1] if self.compat else self.counts

    def step_counts(self, drawn: torch.Tensor | None) -> torch.Tensor:
        """``|M_n|`` of Eq. 2 for one step: with ``sensitivity="trained"`` (the default) the parameters
        that received a gradient in the step's passes, i.e. each unfixed sized module at the size the
        step drew (``drawn``: the size index per module, :class:`~methods.bipeft.gates.SizeDraw`), a
        fixed one at its fixed size, a size-less one whole; otherwise :attr:`sensitivity_counts`.

        (A module sampled off in a pass gets no gradient there: its ``f_n`` of that pass is 0 whatever
        it is divided by.)
        """
        if drawn is None or self.config.effective_sensitivity != "trained":
            return self.sensitivity_counts
        at_draw = self.table.q.gather(1, drawn[:, None]).squeeze(1)
        return torch.where(self.state.fixed, self.counts, at_draw)

    @property
    def finished(self) -> bool:
        return self.done >= self.config.max_triggers

    def update_scores(self, step_scores: torch.Tensor) -> None:
        """Eq. 4 on the kept modules."""
        self.scores = ema(self.scores, step_scores, self.config.gamma, self.state.kept)

    def observe(self, snap: ArchSnapshot, record: bool = True) -> Observation:
        """``C_n``, ``E_t`` and, when ``record`` (after any warm-up), ``I_t``, ``beta_t`` and the trigger."""
        sizes = module_sizes(self.table, self.state, snap.size_probs)
        exported = export_sizes(self.table, self.state, snap.size_index)
        kept_params = float((exported * self.state.kept).sum())
        if self.count == "exported":
            expected = kept_params
        else:
            hard = self.count == "authors" and self.config.max_triggers - self.done <= HARD_KEEP_LAST_TRIGGERS
            expected = expected_params(snap.keep_prob, self.state, sizes, hard=hard)
        if not record:
            return Observation(sizes, expected, None, False, exported, kept_params)
        if self.previous_dims is None:  # v_0: the potential dimensions when recording starts
            self.previous_dims = potential_dimensions(self.table, self.state, snap.size_index, self.compat)
        self.window.add(snap.phi)
        indicator = importance_indicator(self.scores, sizes, self.state.kept, self.budget, skip_and_continue=self.compat)
        fired = self.trigger.update(indicator)
        return Observation(sizes, expected, self.trigger.beta, fired, exported, kept_params)

    def select(self, obs: Observation, snap: ArchSnapshot) -> Selection:
        """Module selection (Eq. 6, §3.3.2), then dimension selection (Eqs. 9-10, §3.4.2)."""
        cfg, state = self.config, self.state
        target = reduction(obs.expected, self.budget, cfg.max_triggers, self.done)
        # removals are counted as E_t counts them; none may take the kept set below floor * B
        counted = obs.export_sizes if self.count == "exported" else obs.sizes
        room = obs.kept_params - cfg.budget_floor * self.budget
        removed = select_removals(self.scores, counted, state.kept, target, skip_and_continue=self.compat,
                                  room=room, actual=obs.export_sizes)
        state.kept[removed] = False
        state.fixed[removed] = True  # "if the module is removed, then d = 1"

        dims = potential_dimensions(self.table, state, snap.size_index, self.compat)
        cosine = vector_cosine(self.previous_dims, dims)
        unfixed = state.kept & ~state.fixed  # size-less modules count as fixed
        count = self._fix_count(int(unfixed.sum()), cosine)
        stability = torch.full((len(self.table),), torch.inf, dtype=torch.float64)
        stability[self.sized_rows] = dimension_stability(
            self.window.first, self.window.last, self.window.std(), reverse_kl=self.compat)
        chosen = lowest(stability, unfixed, count)
        state.fixed[chosen] = True
        state.fixed_index[chosen] = snap.size_index[chosen]
        self.counts[chosen] = self.table.q[chosen, snap.size_index[chosen]]
        fixed = [(i, self.table.sizes[int(snap.size_index[i])]) for i in chosen]

        self.previous_dims = dims
        self.window.restart()
        self.done += 1
        return Selection(target, removed, fixed, count, cosine)

    def _fix_count(self, unfixed: int, cosine: float) -> int:
        """Eq. 10, or the authors' form: NaN -> 1, ``Z - z - 1`` below, all at the last two triggers."""
        cfg = self.config
        if not self.compat:
            return modules_to_fix_count(unfixed, cosine, cfg.max_triggers, self.done)
        left_after = cfg.max_triggers - self.done - 1
        if left_after <= 1:
            return unfixed
        cosine = 1.0 if math.isnan(cosine) else cosine
        return max(0, math.floor(unfixed * cosine / left_after))

    def convergence(self, snap: ArchSnapshot) -> dict[str, float]:
        """How settled Θ and Φ are, for the trace (entropies in nats; NaN where no module is left):

        * ``theta_keep``: the mean keep probability ``softmax(Θ_n)[keep]`` over the kept modules;
        * ``theta_entropy``: the mean entropy of ``softmax(Θ_n)`` over the kept modules (at most ln 2);
        * ``phi_top``: the mean probability of the argmax size, over the kept sized modules whose size
          is not fixed yet;
        * ``phi_entropy``: the mean entropy of ``softmax(Φ_n)`` over those (at most ln K).
        """
        kept, open_sizes = self.state.kept, self.state.kept & ~self.state.fixed
        p = snap.keep_prob[kept]
        theta_entropy = -(p * p.clamp_min(1e-300).log() + (1 - p) * (1 - p).clamp_min(1e-300).log())
        probs = snap.size_probs[open_sizes]
        phi_entropy = -(probs * probs.clamp_min(1e-300).log()).sum(-1)

        def mean(values: torch.Tensor) -> float:
            return float(values.mean()) if values.numel() else math.nan

        return {"theta_keep": mean(p), "theta_entropy": mean(theta_entropy),
                "phi_top": mean(probs.max(-1).values) if probs.numel() else math.nan,
                "phi_entropy": mean(phi_entropy)}

    def active_params(self) -> int:
        """Parameters the supernet trains now: ``|M_n|`` summed over kept modules."""
        return int((self.counts * self.state.kept).sum())

    def export_choices(self, snap: ArchSnapshot) -> tuple[list[int], list[int]]:
        """Kept modules at their fixed or argmax size (0 for removed), and each module's preferred size."""
        sizes = torch.tensor(self.table.sizes)
        index = torch.where(self.state.fixed & self.state.kept, self.state.fixed_index, snap.size_index)
        preferred = torch.where(self.table.sized, sizes[index], torch.ones_like(index))
        choices = torch.where(self.state.kept, preferred, torch.zeros_like(preferred))
        return choices.tolist(), preferred.tolist()
