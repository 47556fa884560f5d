"""The inputs of ``python -m suite run``, checked, turned into a :class:`~suite.plan.Plan`.

:func:`make_plan` checks every input of a run (names, numbers, budgets, method options, the harness
settings, every task's data, the length of the one-shot searches) and builds the plan; nothing is
written before it succeeds, and each problem is one :class:`~suite.plan.UsageError` line. With no
``--tasks`` and no ``--backbone`` it plans the offline default (sized below).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.plan import Plan, UsageError, check_search_steps, transfer_space
from suite.rundir import RunDir, read_json

if TYPE_CHECKING:
    from suite.harness import HarnessConfig

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
             "scoring",
             "method_option", "plugin",
             "retrain_recipe", "no_save_weights", "allow_step_cap", "architecture")


def read_architecture(spec: str, sites) -> dict[str, Any]:
    """``--architecture FILE.json`` or ``--architecture RUN_DIR:RUN_ID``: the architecture and where it
    came from (its digest, and from a run its method, task, budget and backbone). Checked against
    the target backbone's sites: an architecture of a deeper backbone is an error (no layer mapping
    is applied)."""
    from spaces.architecture import Architecture

    folder, sep, run = spec.rpartition(":")
    source: dict[str, Any] = {"method": "architecture", "task": None}
    if sep and Path(folder).is_dir():
        record_path = RunDir(folder).record(run)
        if not record_path.is_file():
            raise UsageError(f"--architecture {spec}: {record_path} does not exist")
        record = read_json(record_path, "a record")
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


def absolute_budget(fraction: float | None, absolute: int | None, total: int) -> int | None:
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
        absolute_budget(value, None, 1)
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
        absolute_budget(None, args.budget_params, total)
        if budgets:
            raise UsageError("give either --budget (fractions) or --budget-params (a count), not both")
    elif not budgets:
        budgets = (OFFLINE_BUDGET,) if is_offline_default(args) else (PAPER_BUDGET,)
    searched = [m for m in methods if METHODS.get(m).kind != "manual"]
    if searched:
        space_obj = build_space(space, sites)
        wanted = [args.budget_params] if args.budget_params is not None else [absolute_budget(b, None, total) for b in budgets]
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
                budgets=budgets, absolute_budget=args.budget_params, data_dir=args.data_dir, harness=harness,
                method_options=options, backbone_params=total, plugins=plugins, retrain_recipe=recipe,
                save_weights=not getattr(args, "no_save_weights", False),
                allow_step_cap=bool(getattr(args, "allow_step_cap", False)))
    return _checked(plan)


def _checked(plan: Plan) -> Plan:
    """What can be checked before Ray starts once the plan is made (its harness settings were
    checked as it was built): every task's data (files present, every row parsed, labels valid,
    splits big enough), and the search steps."""
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


def _harness(args: Any) -> HarnessConfig:
    """The harness settings of the command line (the offline default's sizes when no task or backbone
    is given); a bad value (e.g. an unknown --scoring) is one line, now."""
    from suite.harness import HarnessConfig

    harness = {k: getattr(args, k, None) for k in ("epochs", "max_steps", "max_train_samples", "max_eval_samples",
                                                   "batch_size", "eval_every", "max_source_length", "scoring")
               if getattr(args, k, None) is not None}
    if is_offline_default(args):  # sized for a CPU (see above)
        harness = {**{k: v for k, v in OFFLINE_HARNESS.items()
                      if not (k == "epochs" and "max_steps" in harness)}, **harness}
    return HarnessConfig(**harness)


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


