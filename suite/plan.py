"""A run's plan: what ``python -m suite run`` will do, saved as ``<out>/run.json`` for ``--resume``.

A :class:`RunPlan` is the product methods × tasks × seeds × budgets on one backbone and space; each
cell is a :class:`Job` with a file-safe ``run_id`` (the record's name). Manual baselines ignore the
budget: they get one job per task and seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suite.records import run_id, write_json_atomic

PLAN_FILE = "run.json"
OFFLINE_BACKBONE = "all-MiniLM-L6-v2"
OFFLINE_TASK = "demo/rotten_tomatoes"
PAPER_BUDGET = 1.39e-4  # 1.39‱ of the backbone (BIPEFT Table 1)
# The offline default is sized to finish `run --methods lora,bitfit` (or bipeft,s3delta) within 10
# minutes on 2 CPU cores: a subsample of the demo task's train split, 2 epochs, 500 eval examples.
OFFLINE_HARNESS = {"max_train_samples": 3000, "max_eval_samples": 500, "epochs": 2}


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


@dataclass(frozen=True)
class RunPlan:
    """Everything that defines a run (and nothing about where or how fast it runs)."""

    methods: tuple[str, ...]
    space: str
    tasks: tuple[str, ...]
    backbone: str
    seeds: tuple[int, ...]
    budgets: tuple[float, ...] = ()          # fractions of the backbone
    budget_params: int | None = None         # or one absolute budget
    sizes: tuple[int, ...] = (1, 4, 8)
    data_dir: str | None = None
    harness: dict[str, Any] = field(default_factory=dict)  # HarnessConfig overrides
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    backbone_params: int = 0

    def jobs(self) -> list[Job]:
        """The plan's jobs, in a stable order."""
        from methods import METHODS

        out = []
        for method in self.methods:
            kind = METHODS.get(method).kind
            budgets: list[tuple[float | None, int | None]]
            if kind == "manual":
                budgets = [(None, None)]
            elif self.budget_params is not None:
                budgets = [(self.budget_params / self.backbone_params, self.budget_params)]
            else:
                budgets = [(b, round(b * self.backbone_params)) for b in self.budgets]
            space = "manual" if kind == "manual" else self.space
            for task in self.tasks:
                for seed in self.seeds:
                    for fraction, params in budgets:
                        out.append(Job(method, kind, task, seed, fraction, params, space))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        tuples = ("methods", "tasks", "seeds", "budgets", "sizes")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})

    def save(self, out: Path) -> None:
        write_json_atomic(Path(out) / PLAN_FILE, self.to_dict())

    @classmethod
    def load(cls, out: Path) -> RunPlan:
        path = Path(out) / PLAN_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {out} holds no run (no {PLAN_FILE}); start one without --resume")
        return cls.from_dict(json.loads(path.read_text()))
