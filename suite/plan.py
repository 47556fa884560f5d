"""A run's plan: what ``python -m suite run`` will do, saved as ``<out>/run.json`` for ``--resume``.

* :func:`make_plan` checks every input of a run (names, numbers, budgets, method options) and
  builds the :class:`Plan`; nothing is written before it succeeds.
* A :class:`Plan` is the product methods × tasks × seeds × budgets on one backbone and space; each
  cell is a :class:`Job` with a file-safe ``run_id`` (the record's name). Manual baselines ignore
  the budget: they get one job per task and seed.
* :meth:`Plan.trial_spec` is what one Ray trial receives: its own job and the plan's settings it
  needs (and, for a retrain, its architecture), never the whole plan or the other jobs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spaces import DEFAULT_SIZES
from suite.records import run_id, write_json_atomic

PLAN_FILE = "run.json"
OFFLINE_BACKBONE = "all-MiniLM-L6-v2"
OFFLINE_TASK = "demo/rotten_tomatoes"
PAPER_BUDGET = 1.39e-4  # 1.39‱ of the backbone (BIPEFT Table 1)
# The offline default is sized to finish `run --methods lora,bitfit` (or bipeft,s3delta) within 10
# minutes on 2 CPU cores: a subsample of the demo task's train split, 2 epochs, 500 eval examples.
# Batch 16 gives a one-shot search 63 steps per epoch over the weight-train half (1,000 reviews), so
# BIPEFT reaches its Z triggers (it needs warm-up + H + Z = 105 steps) within the 2 epochs. 3,000
# reviews took 11.5 minutes for bipeft,s3delta (S3Delta's second-order search two thirds of it).
OFFLINE_HARNESS = {"max_train_samples": 2000, "max_eval_samples": 500, "epochs": 2, "batch_size": 16}
# The paper's 1.39e-4 of MiniLM is 3,157 parameters, 23x fewer than LoRA r=8 there (73,728): the
# offline default searches at 1e-3 (22,713), near BitFit's size, so that searched and manual
# architectures are a fair fight.
OFFLINE_BUDGET = 1e-3
# The command-line options that define a plan (a resumed run takes none of them).
PLAN_ARGS = ("methods", "space", "tasks", "backbone", "budget", "budget_params", "seeds", "data_dir", "epochs",
             "max_steps", "max_train_samples", "max_eval_samples", "batch_size", "eval_every", "max_source_length",
             "scoring", "precision",
             "method_option", "plugin",
             "retrain_recipe", "no_save_weights", "allow_step_cap", "architecture")


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


@dataclass(frozen=True)
class Plan:
    """Everything that defines a run (and nothing about where or how fast it runs)."""

    methods: tuple[str, ...]
    space: str
    tasks: tuple[str, ...]
    backbone: str
    seeds: tuple[int, ...]
    budgets: tuple[float, ...] = ()          # fractions of the backbone
    budget_params: int | None = None         # or one absolute budget
    sizes: tuple[int, ...] = DEFAULT_SIZES
    data_dir: str | None = None
    harness: dict[str, Any] = field(default_factory=dict)  # HarnessConfig overrides
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    backbone_params: int = 0
    plugins: tuple[str, ...] = ()            # modules imported in every trial (out-of-tree methods)
    retrain_recipe: str = "suite"            # suite.recipe: one recipe for all, or each method's authors'
    save_weights: bool = True                # keep each retrain's trained weights beside its record
    allow_step_cap: bool = False             # accept searches planned shorter than a method needs
    transfer: dict[str, Any] | None = None   # a given architecture to retrain: {"architecture", "source"}

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

    def method(self, name: str):
        """The method ``name`` with this plan's options (None: a transferred architecture's source
        method that is not registered here)."""
        from methods import METHODS, get_method

        if self.transfer is not None and name not in METHODS:
            return None
        return get_method(name, self.method_options.get(name))

    def trial_spec(self, job: Job, architecture: dict | None = None) -> dict[str, Any]:
        """What one trial needs, as a JSON-able dict (a Ray Tune config value)."""
        from suite.recipe import op_options

        # a relative --data-dir is relative to where the run was started; trials run in their own folders
        data_dir = str(Path(self.data_dir).resolve()) if self.data_dir else None
        return {"run_id": job.run_id, "job": asdict(job), "backbone": self.backbone, "space": self.space,
                "sizes": list(self.sizes), "data_dir": data_dir, "harness": dict(self.harness),
                "method_options": dict(self.method_options.get(job.method, {})), "plugins": list(self.plugins),
                "op_options": op_options(self.retrain_recipe, self.method(job.method)),
                "transfer": (self.transfer or {}).get("source"),
                "save_weights": self.save_weights, "architecture": architecture}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        tuples = ("methods", "tasks", "seeds", "budgets", "sizes", "plugins")
        plan = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        if isinstance(plan.get("harness"), dict) and "bf16" in plan["harness"]:  # a run.json before --precision
            harness = dict(plan["harness"])
            harness.setdefault("precision", "auto" if harness.pop("bf16") else "fp32")
            plan["harness"] = harness
        return cls(**plan)

    def save(self, out: Path) -> None:
        write_json_atomic(Path(out) / PLAN_FILE, self.to_dict())

    @classmethod
    def load(cls, out: Path) -> Plan:
        """The plan saved in ``out`` (one-line errors for a missing, truncated or foreign file)."""
        path = Path(out) / PLAN_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {out} holds no run (no {PLAN_FILE}); start one without --resume")
        try:
            data = json.loads(path.read_text())
            return cls.from_dict(data)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path} is not a run plan: invalid JSON ({e.msg} at line {e.lineno}); it was cut "
                             "short or written by something else") from None
        except (TypeError, AttributeError):
            raise UsageError(f"{path} is not a run plan written by `python -m suite run` (its keys: "
                             f"{', '.join(sorted(data)) if isinstance(data, dict) else type(data).__name__})") from None


def transfer_space(source: dict[str, Any]) -> str:
    """The ``space`` field of a transferred architecture's jobs: where it came from
    (``from_superglue_rte``), so that its run ids and table rows stay apart from searched ones."""
    return "from_" + (source.get("task") or "file").replace("/", "_")


def read_architecture(spec: str, sites) -> dict[str, Any]:
    """``--architecture FILE.json`` or ``--architecture RUN_DIR:RUN_ID``: the architecture and where it
    came from (its digest, and from a run its method, task, budget and backbone). Checked against
    the target backbone's sites: an architecture of a deeper backbone is an error (no layer mapping
    is applied)."""
    from spaces.architecture import Architecture

    folder, sep, run = spec.rpartition(":")
    source: dict[str, Any] = {"method": "architecture", "task": None}
    if sep and Path(folder).is_dir():
        record_path = Path(folder) / "records" / f"{run}.json"
        if not record_path.is_file():
            raise UsageError(f"--architecture {spec}: {record_path} does not exist")
        record = json.loads(record_path.read_text())
        if not record.get("architecture"):
            raise UsageError(f"--architecture {spec}: the record has no architecture (its search failed)")
        arch = Architecture.from_dict(record["architecture"])
        source = {"method": record["method"], "task": record["task"], "run_id": run, "backbone": record["backbone"],
                  "budget_fraction": record["budget"]["fraction"], "budget_params": record["budget"]["params"]}
    else:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--architecture {spec}: no such file (or RUN_DIR:RUN_ID)")
        try:
            arch = Architecture.load(path)
        except (ValueError, json.JSONDecodeError) as e:
            raise UsageError(f"--architecture {spec}: {e}") from None
    missing = [str(p.site) for p in arch.placements if p.site not in sites.by_site]
    if missing:
        layers = 1 + max((s.site.layer for s in sites.specs), default=-1)
        raise UsageError(f"--architecture {spec} does not fit this backbone ({layers} layers): it has no site "
                         f"{missing[0]} ({len(missing)} such placements); no mapping between depths is applied")
    return {"architecture": arch.to_dict(), "source": {**source, "digest": arch.digest()}}


# ---- reading the command line -------------------------------------------------------------------
def budget_params(fraction: float | None, absolute: int | None, total: int) -> int | None:
    """The absolute budget from a fraction of the backbone or an absolute count."""
    if fraction is not None and absolute is not None:
        raise UsageError("give either --budget (a fraction) or --budget-params (a count), not both")
    if absolute is not None:
        if absolute <= 0:
            raise UsageError(f"--budget-params must be > 0, got {absolute}")
        return absolute
    if fraction is not None:
        if not fraction > 0:
            raise UsageError(f"--budget must be a fraction > 0 of the backbone, got {fraction}")
        if fraction > 1:
            raise UsageError(f"--budget is a fraction of the backbone (1.39e-4 is 1.39‱), got {fraction} > 1")
        return round(fraction * total)
    return None


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_seeds(text: str) -> tuple[int, ...]:
    seeds = []
    for item in split_list(text):
        try:
            seeds.append(int(item))
        except ValueError:
            raise UsageError(f"--seeds takes comma-separated integers (e.g. 0,1,2), got {item!r}") from None
    if not seeds:
        raise UsageError("--seeds is empty")
    return tuple(seeds)


def parse_budgets(text: str) -> tuple[float, ...]:
    out = []
    for item in split_list(text):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"--budget takes comma-separated fractions (e.g. 1.39e-4), got {item!r}") from None
        budget_params(value, None, 1)
        out.append(value)
    return tuple(out)


def parse_method_options(items: list[str] | None) -> dict[str, dict]:
    """``--method-option bipeft.code_compat=true`` -> ``{"bipeft": {"code_compat": True}}``, each value
    read by its config field's type (:func:`core.configs.parse_value`)."""
    from core.configs import parse_value
    from methods import METHODS

    options: dict[str, dict] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise UsageError(f"--method-option takes METHOD.KEY=VALUE, got {item!r}")
        config = METHODS.get(method).Config
        if config is None:
            raise UsageError(f"method {method!r} takes no options (--method-option {item})")
        options.setdefault(method, {})[name] = parse_value(config, name, raw)
    return options


def make_plan(args: Any) -> Plan:
    """Validate every input and build the run plan; nothing is written before this succeeds.

    ``args`` holds the ``run`` options as attributes (an ``argparse.Namespace``; None for unset).
    """
    from core.registry import import_plugins
    from methods import METHODS
    from spaces import SPACES, build_space
    from suite.backbones import backbone_sites
    from suite.tasks import expand_tasks

    for name in ("methods", "space", "tasks", "backbone", "seeds", "budget", "data_dir", "architecture", "plugin"):
        value = getattr(args, name, None)
        if value is not None and not split_list(str(value)):  # "" or "," is not "the default"
            raise UsageError(f"--{name.replace('_', '-')} is empty; leave it out for the default")
    plugins = tuple(split_list(args.plugin)) if getattr(args, "plugin", None) else ()
    import_plugins(plugins)
    if getattr(args, "architecture", None):
        return _checked(_transfer_plan(args))
    if not args.methods:
        raise UsageError("run needs --methods, e.g. --methods lora,bitfit (see `python -m suite ls methods`)")
    methods = split_list(args.methods)
    for m in methods:
        METHODS.check(m)
    space = args.space or "s2"
    SPACES.check(space)
    tasks = expand_tasks(args.tasks or OFFLINE_TASK)
    backbone = args.backbone or OFFLINE_BACKBONE
    seeds = parse_seeds(args.seeds or "0")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a directory")
    if args.epochs is not None and args.max_steps is not None:
        raise UsageError("give either --epochs or --max-steps, not both")
    for name in ("epochs", "max_steps", "max_train_samples", "max_eval_samples", "batch_size", "eval_every",
                 "max_source_length"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    options = parse_method_options(args.method_option)
    for name, opts in options.items():
        if name not in methods:
            raise UsageError(f"--method-option names {name!r}, which is not among --methods {','.join(methods)}")
        METHODS.get(name)(opts)  # strict config: unknown keys and bad values fail here
    sites = backbone_sites(backbone)
    total = sites.backbone_params
    budgets = parse_budgets(args.budget) if args.budget else ()
    if args.budget_params is not None:
        budget_params(None, args.budget_params, total)
        if budgets:
            raise UsageError("give either --budget (fractions) or --budget-params (a count), not both")
    elif not budgets:
        budgets = (OFFLINE_BUDGET,) if is_offline_default(args) else (PAPER_BUDGET,)
    searched = [m for m in methods if METHODS.get(m).kind != "manual"]
    if searched:
        space_obj = build_space(space, sites)
        wanted = [args.budget_params] if args.budget_params is not None else [budget_params(b, None, total) for b in budgets]
        for m in searched:
            capacity = METHODS.get(m)(options.get(m)).capacity(space_obj)
            for b in wanted:
                if b < 1:
                    raise UsageError(f"budget {b} rounds to zero parameters on this backbone")
                if b > capacity:
                    whole = "the whole" if capacity == space_obj.full_size() else f"what {m} can hold in the"
                    raise UsageError(f"budget {b:,} parameters is larger than {whole} {space} space "
                                     f"({capacity:,} = {capacity / total:.3g} of the backbone); choose a smaller one")
    harness, recipe = _harness(args), _recipe(args)
    plan = Plan(methods=tuple(methods), space=space, tasks=tuple(tasks), backbone=backbone, seeds=seeds,
                budgets=budgets, budget_params=args.budget_params, data_dir=args.data_dir, harness=harness,
                method_options=options, backbone_params=total, plugins=plugins, retrain_recipe=recipe,
                save_weights=not getattr(args, "no_save_weights", False),
                allow_step_cap=bool(getattr(args, "allow_step_cap", False)))
    return _checked(plan)


def _checked(plan: Plan) -> Plan:
    """What can be checked before Ray starts: the harness settings, every task's data (files
    present, every row parsed, labels valid, splits big enough), and the search steps."""
    from suite.harness import HarnessConfig

    HarnessConfig(**plan.harness)  # e.g. an unknown --scoring: one line, now
    train_sizes = {task: check_data(plan, task) for task in plan.tasks}
    if not plan.allow_step_cap and plan.transfer is None:
        check_search_steps(plan, train_sizes)
    return plan


def check_data(plan: Plan, task: str) -> int:
    """Load ``task`` as a trial will (its files, or the hub without ``--data-dir``) and return its
    training examples; every problem is a one-line error naming the file and line."""
    from suite.tasks import get_task, load_splits

    splits = load_splits(get_task(task), plan.seeds[0], plan.data_dir)
    for name, examples in splits.sizes().items():
        if examples == 0:
            raise UsageError(f"{task}: its {name} split is empty")
    return len(splits.train)


def is_offline_default(args: Any) -> bool:
    """No --tasks and no --backbone: the packaged MiniLM on the demo task, sized for a CPU."""
    return args.tasks is None and args.backbone is None


def _harness(args: Any) -> dict[str, Any]:
    """The harness overrides of the command line (the offline default's sizes when no task or backbone is given)."""
    harness = {k: getattr(args, k, None) for k in ("epochs", "max_steps", "max_train_samples", "max_eval_samples",
                                                   "batch_size", "eval_every", "max_source_length", "scoring",
                                                   "precision")
               if getattr(args, k, None) is not None}
    if is_offline_default(args):  # sized for a CPU (see above)
        harness = {**{k: v for k, v in OFFLINE_HARNESS.items()
                      if not (k == "epochs" and "max_steps" in harness)}, **harness}
    return harness


def _recipe(args: Any) -> str:
    from suite.recipe import RECIPES

    recipe = getattr(args, "retrain_recipe", None) or "suite"
    if recipe not in RECIPES:
        raise UsageError(f"unknown --retrain-recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    return recipe


def _transfer_plan(args: Any) -> Plan:
    """``run --architecture ...``: retrain one given architecture on the tasks (no search)."""
    from methods import METHODS
    from suite.backbones import backbone_sites
    from suite.tasks import expand_tasks

    if args.methods:
        raise UsageError("--architecture retrains a given architecture: drop --methods")
    tasks = expand_tasks(args.tasks or OFFLINE_TASK)
    backbone = args.backbone or OFFLINE_BACKBONE
    sites = backbone_sites(backbone)
    transfer = read_architecture(args.architecture, sites)
    recipe = _recipe(args)
    source = transfer["source"]["method"]
    if recipe == "authors" and source not in METHODS:
        raise UsageError(f"--retrain-recipe authors needs the architecture's method, and {source!r} is not one "
                         "here: use the suite's recipe")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a directory")
    return Plan(methods=(source,), space=transfer_space(transfer["source"]), tasks=tuple(tasks), backbone=backbone,
                seeds=parse_seeds(args.seeds or "0"), data_dir=args.data_dir, harness=_harness(args),
                backbone_params=sites.backbone_params, retrain_recipe=recipe,
                save_weights=not getattr(args, "no_save_weights", False), transfer=transfer)


def planned_search_steps(plan: Plan, task: str, n_train: int) -> tuple[int, int]:
    """``(steps per epoch, planned steps)`` of a one-shot search on ``task`` with ``n_train``
    training examples: batches of the weight-train half of the (subsampled) train split, the
    harness's epochs, its step cap."""
    from suite.data import weight_half_size
    from suite.harness import HarnessConfig
    from suite.tasks import get_task

    task_obj = get_task(task)
    cfg = HarnessConfig(**plan.harness)
    per_epoch = cfg.steps_per_epoch(weight_half_size(cfg.train_size(n_train)), task_obj)
    return per_epoch, cfg.planned_steps(per_epoch, cfg.search_epochs(task_obj))


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
