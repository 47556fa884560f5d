"""How a method plugs in: the ``Method`` kinds, what a search receives and what it returns.

Every method ends in the same thing, a fixed :class:`~spaces.architecture.Architecture`; the
retrain harness that scores it knows nothing about methods. Three kinds, each an abstract class:

* :class:`ManualMethod` — ``architecture(sites)``: a fixed architecture for a backbone (LoRA,
  Adapter, BitFit, LNFit, full fine-tuning).
* :class:`OneShotMethod` — ``search(ctx) -> SearchResult`` in one trial (BIPEFT, S3Delta,
  PrunePEFT): the shared budget check, then the method's ``run_search(ctx)``. It sees only the
  search splits of ``ctx``: never the test split.
* :class:`BlackBoxMethod` — ``make_searcher(problem)`` returns a Ray Tune ``Searcher``; each
  candidate architecture is its own trial, proxy-trained by the harness; ``select(problem,
  results) -> SearchResult`` picks the final one (AutoPEFT, APET, optuna).

A method is registered by name in :data:`methods.METHODS` (one line in ``methods/__init__.py``, or
an entry point of another package); the registry checks that the class subclasses :class:`Method`
and that its ``name`` equals its key. ``label`` is how the tables print it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from core.configs import config_to_dict, load_config
from spaces.architecture import Architecture

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from methods.blackbox import BlackBoxConfig
    from spaces.sites import BackboneSites
    from spaces.space import SearchSpace


class TaskModel(Protocol):
    """What the harness trains: a transformers model plus the task's loss and prediction.

    ``model`` is the transformers model into which ops are injected; ``head_parameters()`` are the
    task head's parameters (BERT-like classifiers), trained with the PEFT weights and counted apart.
    """

    model: nn.Module

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...  # the training loss
    def head_parameters(self) -> list[nn.Parameter]: ...
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...


@dataclass
class SearchContext:
    """Everything a one-shot search may use, and nothing it must not see (the test split).

    Attributes:
        space: the search space, over the backbone's sites.
        budget: the trainable-parameter budget (PEFT parameters; a task head is not counted).
        seed: the run seed (splits, init and sampling all derive from it).
        make_model: a fresh task model (frozen pretrained backbone + head) on ``device``.
        weight_train: batches of the weight-train half of train (one pass = one epoch).
        arch_train: batches of the arch-train half of train (DARTS split, paper App. B).
        train: batches of the whole train split (a method that is not bi-level, e.g. PrunePEFT).
        validation: batches of the validation split (never the test split).
        evaluate: validation metrics of a task model, selection metric first, ×100.
        total_steps: the planned search steps (the harness's epochs over ``weight_train``, capped
            by its ``max_steps``; the one owner of both is ``HarnessConfig``).
        train_steps: the same epochs over ``train`` (a method that trains on the whole split).
        device: where to train.
        lr: the PEFT weight learning rate.
        report: a callback for per-step metrics (Ray's ``tune.report`` inside a trial).
        out_dir: a folder for traces and other files the method wants to keep.
        autocast: a context-manager factory for the run's precision (bf16 autocast where ``--precision``
            resolved to bf16, a no-op at fp32); every pass of a search enters it.
        selection_metric: the name of the task's selection metric.
        op_options: keyword options per op name for the ops the search builds (``{"lora": {"scaling":
            16.0}}``): the run's retrain recipe (``suite.recipe``), so that a search ranks modules as
            they will be retrained; an op without an entry takes its class defaults.
    """

    space: SearchSpace
    budget: int
    seed: int
    make_model: Callable[[], TaskModel]
    weight_train: Iterable[dict[str, torch.Tensor]]
    arch_train: Iterable[dict[str, torch.Tensor]]
    validation: Iterable[dict[str, torch.Tensor]]
    evaluate: Callable[[TaskModel], dict[str, float]]
    total_steps: int
    train: Iterable[dict[str, torch.Tensor]] | None = None
    train_steps: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    lr: float = 3e-4
    report: Callable[[dict[str, Any]], None] = lambda metrics: None
    out_dir: Path | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    selection_metric: str = "accuracy"
    op_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def steps_per_epoch(self) -> int:
        """Batches in one pass over ``weight_train``."""
        return len(self.weight_train)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SearchProblem:
    """What a black-box search is asked: a space, a parameter budget, a seed."""

    space: SearchSpace
    budget: int
    seed: int


@dataclass
class SearchResult:
    """What a search returns: the fixed architecture and what the record should keep about how it
    was found (stop reason, candidates, Pareto set, ...; JSON-serialisable)."""

    architecture: Architecture
    info: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """A search method (or a manual baseline). Subclasses set the class attributes.

    Args:
        config: a ``Config`` instance or a dict of its fields (unknown keys are errors).
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    label: ClassVar[str] = ""  # how tables print it (default: the name)
    paper: ClassVar[str] = ""
    Config: ClassVar[type | None] = None

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if self.Config is None:
            if config or overrides:
                raise ValueError(f"method {self.name!r} takes no options")
            self.config = None
        elif isinstance(config, self.Config) and not overrides:
            self.config = config
        else:
            self.config = load_config(self.Config, config if isinstance(config, dict) else
                                      (config_to_dict(config) if config is not None else None), **overrides)

    @classmethod
    def display_name(cls) -> str:
        return cls.label or cls.name

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.config) if self.config is not None else {}

    def capacity(self, space: SearchSpace) -> int:
        """The most parameters an architecture of this method can hold in ``space`` (default: the
        whole space). A budget above it cannot be spent: the CLI refuses it."""
        return space.full_size()

    def authors_recipe(self) -> dict[str, dict[str, Any]]:
        """Op options with which this method's authors retrain what it finds (their published code),
        for ``--retrain-recipe authors``; an op left out takes its class defaults (BIPEFT's code:
        unscaled LoRA, Houlsby-initialised gelu adapters, the gated prefix). By default the suite
        retrains every architecture with one recipe instead (:mod:`suite.recipe`)."""
        return {}

    def settings(self) -> list[str]:
        """How this method's configuration departs from its published default, for the tables'
        row labels (e.g. ``["1st-order DARTS"]``); empty when it runs as published."""
        return []


class ManualMethod(Method):
    """A manually designed PEFT method: the same fixed architecture whatever the task."""

    kind = "manual"

    @abstractmethod
    def architecture(self, sites: BackboneSites, backbone_name: str = "") -> Architecture:
        """The fixed architecture on a backbone with these sites."""


# The budget window of a one-shot search: an architecture holds BUDGET_FLOOR * B <= params <= B
# (S3Delta's and PrunePEFT's exports; the default of BIPEFT's budget_floor option).
BUDGET_FLOOR = 0.8


def budget_floor(budget: float) -> float:
    """The fewest parameters a search should keep under ``budget``: ``BUDGET_FLOOR * budget``."""
    return BUDGET_FLOOR * budget


def check_budget(budget: int, space: SearchSpace) -> None:
    """Raise ``ValueError`` unless some non-empty architecture of ``space`` fits ``budget`` (the
    message names the budget and the smallest module)."""
    if budget <= 0:
        raise ValueError(f"the budget must be > 0 parameters, got {budget}")
    module, params = space.smallest_module()
    if params > budget:
        at = f" at size {module.sizes[0]}" if module.sizes else ""
        raise ValueError(f"the budget of {budget} parameters is below the smallest module of space {space.name!r} "
                         f"({module.key}{at}: {params} parameters): no architecture fits")


def whole_space(space: SearchSpace, budget: int) -> SearchResult | None:
    """The whole space as the search's result when it fits in ``budget`` (a warning when it holds
    less than the floor: a bigger budget buys nothing more), else None: there is something to search."""
    full = space.full_size()
    if full > budget:
        return None
    if full < budget_floor(budget):
        warnings.warn(f"the whole space {space.name!r} ({full} parameters: every module, the sized ones at "
                      f"{space.sizes[-1]}) is less than {BUDGET_FLOOR:g} x the budget of {budget}: returning all of it",
                      stacklevel=2)
    return SearchResult(space.full(), {"whole_space": True})


class OneShotMethod(Method):
    """A method that searches inside one trial and returns a fixed architecture.

    Subclasses implement :meth:`run_search`; the suite calls :meth:`search`.
    """

    kind = "one-shot"

    def search(self, ctx: SearchContext) -> SearchResult:
        """Search ``ctx.space`` under ``ctx.budget`` on the search splits of ``ctx``.

        A template method: it checks the budget against :meth:`searched_space` (:func:`check_budget`),
        then runs the method's :meth:`run_search`. The check lives here, not in a helper each search
        calls first, so that no method (a plugin's included) can skip it: every one refuses a budget
        no module fits with the same message, before it builds a supernet. The result's
        ``info["op_options"]`` records the op settings the search built its ops with (``ctx.op_options``).
        """
        check_budget(ctx.budget, self.searched_space(ctx.space))
        result = self.run_search(ctx)
        result.info["op_options"] = ctx.op_options  # the record says which op settings the search saw
        return result

    @abstractmethod
    def run_search(self, ctx: SearchContext) -> SearchResult:
        """The method's own search of ``ctx.space`` under ``ctx.budget``, on the search splits of
        ``ctx``; the budget is known to hold the smallest module of :meth:`searched_space`."""

    def searched_space(self, space: SearchSpace) -> SearchSpace:
        """The part of ``space`` this method searches (default: all of it; S3Delta-M: every sized
        module at one size)."""
        return space

    def capacity(self, space: SearchSpace) -> int:
        """The whole of :meth:`searched_space` at its largest: what an architecture of this method can
        hold in ``space`` (S3Delta-M: every module at ``module_size``; AdaLoRA: its own space)."""
        return self.searched_space(space).full_size()

    def min_steps(self, steps_per_epoch: int) -> int:
        """The fewest planned search steps (over ``weight_train``) with which this method can do what
        it is (BIPEFT: reach its Z triggers); the CLI refuses a shorter plan unless told to accept a
        step-capped search. Default 1."""
        return 1


# What a black-box trial reports (the stage's trainable) and the searcher reads.
SCORE = "score"        # the validation selection metric of the proxy-trained candidate (×100; maximise)
RATIO = "param_ratio"  # trainable PEFT parameters / backbone parameters (minimise)
PARAMS = "params"      # trainable PEFT parameters
ROUND = "training_iteration"  # validation rounds so far: Ray Tune's count of reports, one per validation


def finite(value: Any) -> bool:
    """True for a real, finite number (not None, not NaN or inf, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def within_budget(results: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The finished trial results (a finite score and parameter count) and those of them within ``budget``.

    Raises:
        RuntimeError: when no result finished within the budget (the message counts both kinds).
    """
    done = [r for r in results if finite(r.get(SCORE)) and finite(r.get(PARAMS))]
    fits = [r for r in done if r[PARAMS] <= budget]
    if not fits:
        raise RuntimeError(
            f"no candidate of {len(results)} finished within the budget of {budget} parameters "
            f"({len(done)} finished, {len(done) - len(fits)} of them over the budget)"
        )
    return done, fits


class BlackBoxMethod(Method):
    """A method whose candidates are separate trials proposed by a Ray Tune ``Searcher``.

    The search stage runs ``num_candidates()`` trials, ``max_concurrent()`` at a time. Each trial decodes
    its config with :meth:`candidate`, proxy-trains the architecture with the harness at the fidelity of
    :meth:`fidelity` (train split, no test), and reports ``{SCORE, RATIO, PARAMS}``; a failed or
    NaN trial is completed with ``error=True`` / a NaN score. The stage then calls :meth:`select`.
    A proxy reports its score at every validation; :meth:`make_scheduler` may stop a candidate early
    (ASHA), and then its last report is its result.
    With ``num_candidates() == 1`` no selection is needed and the stage takes the one suggestion
    without proxy-training it. All three numbers come from the config, whose class must derive from
    :class:`methods.blackbox.BlackBoxConfig` (checked when the method is made).
    """

    kind = "black-box"
    Config: ClassVar[type[BlackBoxConfig]]
    config: BlackBoxConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        from methods.blackbox import BlackBoxConfig  # methods.blackbox builds on this module

        if not (isinstance(self.Config, type) and issubclass(self.Config, BlackBoxConfig)):
            raise TypeError(f"black-box method {self.name!r}: its Config {self.Config!r} must derive from "
                            "methods.blackbox.BlackBoxConfig")
        super().__init__(config, **overrides)

    @abstractmethod
    def make_searcher(self, problem: SearchProblem, metric: str = SCORE, mode: str = "max") -> Searcher:
        """The Ray Tune searcher that proposes this method's candidates for ``problem``."""

    def num_candidates(self) -> int:
        """How many candidate trials the search stage runs (``config.candidates``)."""
        return self.config.candidates

    def max_concurrent(self) -> int:
        """Candidates evaluated in parallel (the stage wraps the searcher in a ConcurrencyLimiter):
        ``config.concurrency()``."""
        return self.config.concurrency()

    def make_scheduler(self) -> TrialScheduler | None:
        """A new Ray Tune scheduler for one job's candidates, which may stop them early (None: each trains
        its whole proxy): ``config.scheduler``, built by :func:`methods.blackbox.candidate_scheduler`."""
        from methods.blackbox import candidate_scheduler

        return candidate_scheduler(self.config)

    def settings(self) -> list[str]:
        """The row label of the candidates' scheduling ("ASHA"), if not the default."""
        label = self.config.scheduler_label()
        return [label] if label else []

    def fidelity(self) -> dict[str, Any]:
        """``HarnessConfig`` overrides for proxy trials (e.g. ``max_train_samples``, ``max_steps``):
        ``config.overrides()``."""
        return self.config.overrides()

    def candidate(self, space: SearchSpace, config: dict[str, Any]) -> Architecture:
        """The architecture of a trial config suggested by the searcher."""
        return space.from_tune(config)

    def select(self, problem: SearchProblem, results: list[dict[str, Any]]) -> SearchResult:
        """The final architecture from the trials' results, and extra info to record (Pareto set, ...).

        ``results`` holds one dict per finished trial: its ``config``, ``SCORE``, ``RATIO``,
        ``PARAMS`` (failed trials have a NaN score). Default: the best score within the budget.
        """
        _, ok = within_budget(results, problem.budget)
        best = max(ok, key=lambda r: r[SCORE])
        return SearchResult(self.candidate(problem.space, best["config"]), {"candidates": len(results), "valid": len(ok)})
