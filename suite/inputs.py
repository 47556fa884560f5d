"""The inputs of ``python -m suite run``, checked, turned into a :class:`~suite.plan.Plan`.

:func:`make_plan` checks every input of a run (names, numbers, seeds numpy can take, budgets, method
options, the harness settings, inputs no longer than the backbone reads, every task's data, the
length of the one-shot searches) and builds the plan; nothing is written before it succeeds, and
each problem is one :class:`~suite.plan.UsageError` line. A value repeated in a list option is planned
once (:func:`unique`). With no ``--tasks`` and no ``--backbone`` it plans the offline default (sized
below); with ``--architecture``, :mod:`suite.transfer` plans the retrain of a given architecture.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.learning_rate import lr_fields, parse_lr
from suite.plan import Plan, UsageError, check_search_steps
from suite.tracking import parse_log

if TYPE_CHECKING:
    from suite.harness import HarnessConfig

OFFLINE_BACKBONE = "all-MiniLM-L6-v2"
OFFLINE_TASK = "demo/rotten_tomatoes"
PAPER_BUDGET = 1.39e-4  # 1.39‱ of the backbone (BIPEFT Table 1)
# The offline default is sized to finish `run --methods bipeft,s3delta` (or lora,bitfit) within 5
# minutes on 2 CPU cores (README, "Set-up: two commands", has the measured wall times): a subsample
# of the demo task's train split, 2 epochs, 500 eval examples. Batch 8 gives a one-shot search 94
# steps per epoch over the weight-train half (750 reviews), 188 in all: BIPEFT needs at least
# warm-up + H + Z = 105 (BIPEFT.min_steps), and measured, its triggers do not fire every step: it
# reached its 100th at step 162 of 188 here, where batch 16 over 2,000 reviews (126 steps) stopped it at
# the step cap after 80 (`python -m suite run --methods bipeft,s3delta`, 2026-12-04).
OFFLINE_HARNESS = {"max_train_samples": 1500, "max_eval_samples": 500, "epochs": 2, "batch_size": 8}
# The paper's 1.39e-4 of MiniLM is 3,157 parameters, 23x fewer than LoRA r=8 there (73,728): the
# offline default searches at 1e-3 (22,713), near BitFit's size, so that searched and manual
# architectures are a fair fight.
OFFLINE_BUDGET = 1e-3
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (np.random.seed, optuna's samplers) takes 0 .. 2**32 - 1
# The command-line options that define a plan (a resumed run takes none of them).
PLAN_ARGS = ("methods", "space", "tasks", "backbone", "budget", "budget_params", "seeds", "data_dir", "epochs",
             "max_steps", "max_train_samples", "max_eval_samples", "batch_size", "eval_every", "max_source_length",
             "scoring", "precision", "lr", "lr_grid",
             "method_option", "plugin",
             "retrain_recipe", "no_save_weights", "allow_step_cap", "architecture", "log")


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


def check_trial_shape(cpus_per_trial: float | None, gpus_per_trial: float | None, max_failures: int = 0) -> None:
    """``--cpus-per-trial`` > 0, ``--gpus-per-trial`` >= 0 (None: the default), ``--max-failures`` >= 0."""
    if max_failures < 0:
        raise UsageError(f"--max-failures must be >= 0, got {max_failures}")
    if cpus_per_trial is not None and cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial must be > 0, got {cpus_per_trial}")
    if gpus_per_trial is not None and gpus_per_trial < 0:
        raise UsageError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial}")


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def unique(option: str, values: list, key: Callable[[Any], Any] = lambda v: v) -> list:
    """``values`` of the list option ``--option`` without repeats (the first kept): every list option
    plans each job once, and one line on stderr says what was dropped. ``key``: what makes two the same."""
    first: dict[Any, Any] = {}
    dropped = []
    for value in values:
        if key(value) in first:
            same = first[key(value)]
            dropped.append(str(value) if value == same else f"{value} (the same as {same} here)")
        else:
            first[key(value)] = value
    if dropped:
        print(f"note: --{option} repeats {', '.join(dropped)}; each job runs once", file=sys.stderr)
    return list(first.values())


def comma_numbers(option: str, text: str, read: Callable[[str], Any], takes: str) -> list:
    """The comma-separated values of ``--option``, each read by ``read`` (``int``, ``float``); one line
    naming the first it cannot read and what the option ``takes``."""
    values = []
    for item in split_list(text):
        try:
            values.append(read(item))
        except ValueError:
            raise UsageError(f"--{option} takes comma-separated {takes}, got {item!r}") from None
    return values


def parse_seeds(text: str) -> tuple[int, ...]:
    seeds = comma_numbers("seeds", text, int, "integers (e.g. 0,1,2)")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise UsageError(f"--seeds takes integers from 0 to {MAX_SEED} (what numpy's seeding accepts), got {seed}")
    if not seeds:
        raise UsageError("--seeds is empty")
    return tuple(unique("seeds", seeds))


def parse_budgets(text: str) -> tuple[float, ...]:
    budgets = comma_numbers("budget", text, float, "fractions (e.g. 1.39e-4)")
    for budget in budgets:
        absolute_budget(budget, None, 1)
    return tuple(budgets)


def plan_tasks(spec: str | None) -> tuple[str, ...]:
    """``--tasks``: names and groups expanded, each task once (:func:`unique`)."""
    from suite.tasks import expand_tasks

    spec = spec or OFFLINE_TASK
    expand_tasks(spec)  # every unknown name in one error
    return tuple(unique("tasks", [task for item in split_list(spec) for task in expand_tasks(item)]))


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
        value = parse_value(config, name, raw)
        if options.get(method, {}).get(name, value) != value:
            raise UsageError(f"--method-option gives {key} twice: {options[method][name]!r} and {value!r}")
        options.setdefault(method, {})[name] = value
    return options


def make_plan(args: Any, known_sizes: dict[str, int] | None = None) -> Plan:
    """Validate every input and build the run plan; nothing is written before this succeeds.

    ``args`` holds the ``run`` options as attributes (an ``argparse.Namespace``; None for unset).
    ``known_sizes``: training examples of tasks whose data are not loaded (a ``--dry-run`` given
    ``--split-sizes``); every other task's data is loaded and checked.
    """
    from core.registry import import_plugins
    from methods import METHODS
    from spaces import SPACES, build_space
    from suite.backbones import backbone_sites

    for name in ("methods", "space", "tasks", "backbone", "seeds", "budget", "data_dir", "architecture", "plugin"):
        value = getattr(args, name, None)
        if value is not None and not split_list(str(value)):  # "" or "," is not "the default"
            raise UsageError(f"--{name.replace('_', '-')} is empty; leave it out for the default")
    plugins = tuple(unique("plugin", split_list(args.plugin))) if getattr(args, "plugin", None) else ()
    import_plugins(plugins)
    if getattr(args, "architecture", None):
        from suite.transfer import transfer_plan

        return _checked(transfer_plan(args), known_sizes)
    if not args.methods:
        raise UsageError("run needs --methods, e.g. --methods lora,bitfit (see `python -m suite ls methods`)")
    methods = unique("methods", split_list(args.methods))
    for m in methods:
        METHODS.check(m)
    space = args.space or "s2"
    SPACES.check(space)
    tasks = plan_tasks(args.tasks)
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
    budgets = tuple(unique("budget", list(budgets), key=lambda b: round(b * total)))  # one run id per count
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
    full = any(METHODS.get(m).kind == "manual" and METHODS.get(m)(options.get(m)).architecture(sites, backbone).full_finetune
               for m in methods)
    plan = Plan(methods=tuple(methods), space=space, tasks=tuple(tasks), backbone=backbone, seeds=seeds,
                budgets=budgets, absolute_budget=args.budget_params, data_dir=args.data_dir, harness=harness,
                method_options=options, backbone_params=total, plugins=plugins, retrain_recipe=recipe,
                save_weights=not getattr(args, "no_save_weights", False),
                allow_step_cap=bool(getattr(args, "allow_step_cap", False)), log=parse_log(getattr(args, "log", None)),
                **lr_fields(args, sites.family, full))
    return _checked(plan, known_sizes)


def _checked(plan: Plan, known_sizes: dict[str, int] | None = None) -> Plan:
    """What can be checked before Ray starts once the plan is made (its harness settings were
    checked as it was built): inputs the backbone can read, every task's data (files present, every
    row parsed, labels valid, splits big enough), and the search steps."""
    check_source_length(plan)
    train_sizes = {task: (known_sizes or {}).get(task) or check_data(plan, task) for task in plan.tasks}
    if not plan.allow_step_cap and plan.transfer is None:
        check_search_steps(plan, train_sizes)
    return plan


def check_source_length(plan: Plan) -> None:
    """Every task's inputs, truncated to ``--max-source-length`` (else the task's length), must fit the
    backbone's position embeddings (a longer input fails in the first trial with a tensor-size error)."""
    from suite.backbones import load_config, max_source_tokens
    from suite.tasks import get_task

    limit = max_source_tokens(load_config(plan.backbone))
    given = plan.harness.max_source_length
    if limit is None:
        return
    if given is not None and given > limit:
        raise UsageError(f"--max-source-length {given} is beyond what {plan.backbone} reads ({limit} positions); "
                         f"give at most {limit}")
    for task in plan.tasks:
        length = given or get_task(task).max_source_length
        if length > limit:
            raise UsageError(f"{task} reads inputs of up to {length} tokens, beyond what {plan.backbone} reads "
                             f"({limit} positions): give --max-source-length {limit} or less")


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
                                                   "batch_size", "eval_every", "max_source_length", "scoring",
                                                   "precision", "checkpoint_every")
               if getattr(args, k, None) is not None}
    if getattr(args, "lr", None) is not None:
        harness["lr"] = parse_lr("lr", args.lr)
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


def offline_note(plan) -> str:
    """The closing lines of an offline-default run: what it was, which budget and why, and the paper's setting."""
    h = plan.harness
    length = f"{h.epochs} epochs" if h.epochs is not None else f"{h.max_steps} steps"
    budget = (", ".join(f"{b:g}" for b in plan.budgets) if plan.absolute_budget is None
              else f"{plan.absolute_budget:,} parameters")
    why = (f" of the backbone ({round(OFFLINE_BUDGET * plan.backbone_params):,} parameters, near BitFit's size and a "
           "third of LoRA r=8's; the paper's 1.39e-4 is only 3,157 on MiniLM)") if plan.budgets == (OFFLINE_BUDGET,) else ""
    return (f"This was the offline default: the packaged {plan.backbone} on {h.max_train_samples:,} Rotten Tomatoes "
            f"reviews, {length} at batch {h.batch_size}, budget {budget}{why}. "
            "The paper's setting, on a GPU cluster:\n"
            f"  python -m suite run --methods {','.join(plan.methods)} --backbone t5-large --space s2 --tasks glue "
            "--budget 1.39e-4 --seeds 0,1,2 --gpus-per-trial 1")
