"""A run's plan: what ``python -m suite run`` will do, saved as ``<out>/run.json`` for ``--resume``.

* A :class:`Plan` is the product methods × tasks × seeds × budgets on one backbone and space, with
  the harness settings every trial uses (a :class:`~suite.harness.HarnessConfig`); each cell is a
  :class:`Job` with a file-safe ``run_id`` (the record's name). Manual baselines ignore the budget:
  they get one job per task and seed.
* :meth:`Plan.trial_spec` is what one Ray trial receives: its own job and the plan's settings it
  needs (and, for a retrain, its architecture and learning rate), never the whole plan or the other jobs.
* :meth:`Plan.retrain_lrs`: the learning rates a job's architecture is retrained at, one trial each
  (``--lr``, full fine-tuning's own default, or ``--lr-grid``: :mod:`suite.learning_rate`).
* :func:`planned_search_steps` / :func:`check_search_steps`: how long the plan's one-shot searches
  will be, and whether that is long enough for their methods.

The plan is built from the command line, every input checked, by :func:`suite.inputs.make_plan`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spaces import DEFAULT_SIZES
from suite.records import run_id
from suite.rundir import RunDir, read_json, write_json_atomic

if TYPE_CHECKING:
    from suite.harness import HarnessConfig


class UsageError(ValueError):
    """Bad command-line input; printed as one line."""


@dataclass(frozen=True)
class Job:
    """One (method, task, seed, budget) of a run."""

    method: str
    kind: str
    task: str
    seed: int
    budget_fraction: float | None
    budget_params: int | None
    space: str

    @property
    def run_id(self) -> str:
        return run_id(self.method, self.space, self.task, self.seed, self.budget_params)


def _default_harness() -> HarnessConfig:
    from suite.harness import HarnessConfig  # torch and transformers: only once a plan is made

    return HarnessConfig()


@dataclass(frozen=True)
class Plan:
    """Everything that defines a run (and nothing about where or how fast it runs)."""

    methods: tuple[str, ...]
    space: str
    tasks: tuple[str, ...]
    backbone: str
    seeds: tuple[int, ...]
    budgets: tuple[float, ...] = ()          # fractions of the backbone
    absolute_budget: int | None = None       # or one budget in parameters for every searched job
    sizes: tuple[int, ...] = DEFAULT_SIZES
    data_dir: str | None = None
    harness: HarnessConfig = field(default_factory=_default_harness)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    backbone_params: int = 0
    plugins: tuple[str, ...] = ()            # modules imported in every trial (out-of-tree methods)
    retrain_recipe: str = "suite"            # suite.recipe: one recipe for all, or each method's authors'
    save_weights: bool = True                # keep each retrain's trained weights beside its record
    allow_step_cap: bool = False             # accept searches planned shorter than a method needs
    transfer: dict[str, Any] | None = None   # a given architecture to retrain: {"architecture", "source"}
    log: tuple[str, ...] = ()                # where trials and records are also logged (suite.tracking)
    lr_grid: tuple[float, ...] = ()          # every retrain once per rate, the best validation picks
    full_lr: float | None = None             # full fine-tuning's own default (None: the harness's lr)

    def jobs(self) -> list[Job]:
        """The plan's jobs, in a stable order."""
        from methods import METHODS

        if self.transfer is not None:  # one given architecture, retrained on every task and seed
            source = self.transfer["source"]
            space = transfer_space(source)
            return [Job(source["method"], "transfer", task, seed, source.get("budget_fraction"),
                        source.get("budget_params"), space) for task in self.tasks for seed in self.seeds]
        out = []
        for method in self.methods:
            kind = METHODS.get(method).kind
            budgets: list[tuple[float | None, int | None]]
            if kind == "manual":
                budgets = [(None, None)]
            elif self.absolute_budget is not None:
                budgets = [(self.absolute_budget / self.backbone_params, self.absolute_budget)]
            else:
                budgets = [(b, round(b * self.backbone_params)) for b in self.budgets]
            space = "manual" if kind == "manual" else self.space
            for task in self.tasks:
                for seed in self.seeds:
                    for fraction, params in budgets:
                        out.append(Job(method, kind, task, seed, fraction, params, space))
        return out

    def method(self, name: str):
        """The method ``name`` with this plan's options (None: a transferred architecture's source
        method that is not registered here)."""
        from methods import METHODS, get_method

        if self.transfer is not None and name not in METHODS:
            return None
        return get_method(name, self.method_options.get(name))

    def harness_overrides(self) -> dict[str, Any]:
        """The harness settings this plan sets, i.e. those that differ from ``HarnessConfig``'s
        defaults (what ``run.json``, every trial spec and every record hold)."""
        return {f.name: getattr(self.harness, f.name) for f in dataclasses.fields(self.harness)
                if getattr(self.harness, f.name) != f.default}

    def retrain_lrs(self, architecture: dict | None = None) -> tuple[float, ...]:
        """The learning rates ``architecture`` is retrained at, one trial each: the grid, whatever the
        architecture; else full fine-tuning's own default for one that trains every backbone parameter
        (unless ``--lr`` was given), and the run's ``--lr`` for every other."""
        if self.lr_grid:
            return self.lr_grid
        if self.full_lr is not None and (architecture or {}).get("full_finetune"):
            return (self.full_lr,)
        return (self.harness.lr,)

    def trial_spec(self, job: Job, architecture: dict | None = None, lr: float | None = None) -> dict[str, Any]:
        """What one trial needs, as a JSON-able dict (a Ray Tune config value); ``lr``: a retrain's."""
        from suite.recipe import op_options

        # a relative --data-dir is relative to where the run was started; trials run in their own folders
        data_dir = str(Path(self.data_dir).resolve()) if self.data_dir else None
        harness = self.harness_overrides() if lr is None else {**self.harness_overrides(), "lr": lr}
        return {"run_id": job.run_id, "job": asdict(job), "backbone": self.backbone, "space": self.space,
                "sizes": list(self.sizes), "data_dir": data_dir, "harness": harness,
                "method_options": dict(self.method_options.get(job.method, {})), "plugins": list(self.plugins),
                "op_options": op_options(self.retrain_recipe, self.method(job.method)),
                "transfer": (self.transfer or {}).get("source"),
                "save_weights": self.save_weights, "architecture": architecture}

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "harness": self.harness_overrides()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan :meth:`to_dict` gave (also a ``run.json`` written before ``absolute_budget`` was
        named so: its ``budget_params``)."""
        from core.configs import load_config
        from suite.harness import HarnessConfig

        tuples = ("methods", "tasks", "seeds", "budgets", "sizes", "plugins", "log", "lr_grid")
        data = {("absolute_budget" if k == "budget_params" else k): v for k, v in data.items()}
        harness = dict(data.pop("harness", None) or {})
        if "bf16" in harness:  # a run.json before --precision: bf16 (autocast on a GPU) was the default
            harness.setdefault("precision", "auto" if harness.pop("bf16") else "fp32")
        harness = load_config(HarnessConfig, harness)
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()}, harness=harness)

    def save(self, out: Path) -> None:
        write_json_atomic(RunDir(out).plan, self.to_dict())

    @classmethod
    def load(cls, out: Path) -> Plan:
        """The plan saved in ``out`` (one-line errors for a missing, truncated or foreign file)."""
        path = RunDir(out).plan
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {out} holds no run (no {path.name}); start one without --resume")
        data = read_json(path, "a run plan")
        try:
            return cls.from_dict(data)
        except (TypeError, AttributeError):
            raise UsageError(f"{path} is not a run plan written by `python -m suite run` (its keys: "
                             f"{', '.join(sorted(data)) if isinstance(data, dict) else type(data).__name__})") from None


def transfer_space(source: dict[str, Any]) -> str:
    """The ``space`` field of a transferred architecture's jobs: where it came from
    (``from_superglue_rte``), so that its run ids and table rows stay apart from searched ones."""
    return "from_" + (source.get("task") or "file").replace("/", "_")


def planned_search_steps(plan: Plan, task: str, n_train: int, over: str = "weight_train") -> tuple[int, int]:
    """``(steps per epoch of the weight-train half, planned steps)`` of a one-shot search on ``task``
    with ``n_train`` training examples (before the harness subsamples the split): the harness's epochs
    over the batches that drive the search's loop, capped by its step cap. ``over``: those batches,
    the weight-train half's (``SearchContext.total_steps``) or the whole train split's (``"train"``:
    ``SearchContext.train_steps``, PrunePEFT's)."""
    from suite.data import weight_half_size
    from suite.tasks import get_task

    task_obj = get_task(task)
    cfg, n = plan.harness, plan.harness.train_size(n_train)
    per_epoch = cfg.steps_per_epoch(weight_half_size(n), task_obj)
    driving = per_epoch if over == "weight_train" else cfg.steps_per_epoch(n, task_obj)
    return per_epoch, cfg.planned_steps(driving, cfg.search_epochs(task_obj))


def check_search_steps(plan: Plan, train_sizes: dict[str, int]) -> None:
    """Refuse a plan whose one-shot searches cannot do what their method is (BIPEFT: its Z
    triggers need warm-up + H + Z steps), naming the smallest ``--epochs`` / ``--max-steps`` that
    would do, unless the user accepts a step-capped search (``--allow-step-cap``)."""
    import math

    one_shot = [m for m in plan.methods if plan.method(m).kind == "one-shot"]
    for task in plan.tasks if one_shot else ():
        per_epoch, steps = planned_search_steps(plan, task, train_sizes[task])
        for name in one_shot:
            need = plan.method(name).min_steps(per_epoch)
            if steps < need:
                raise UsageError(
                    f"{name} needs at least {need} search steps on {task}, and this plan has {steps} "
                    f"({per_epoch} per epoch over the weight-train half): use --epochs {math.ceil(need / per_epoch)} "
                    f"or more (or --max-steps >= {need}, or more --max-train-samples), or accept a step-capped "
                    "search with --allow-step-cap (its rows are marked)")
