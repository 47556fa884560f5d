"""``python -m suite``: run | table | ls | validate | count.

Every subcommand turns bad input into one clear line naming the bad value and the valid choices
(exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from suite.registry import UnknownName


class UsageError(ValueError):
    """Bad command-line input; printed as one line."""


def _ratio(params: int, total: int) -> str:
    return f"{params / total * 1e4:.2f}‱ = {params / total * 100:.4f}%"


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


def cmd_count(args: argparse.Namespace) -> int:
    from methods import METHODS
    from spaces import SPACES, build_space
    from spaces.space import count_params
    from suite.backbones import backbone_sites

    if (args.space is None) == (args.method is None):
        raise UsageError("count needs exactly one of --space NAME or --method NAME")
    if args.space:
        SPACES.check(args.space)
    else:
        METHODS.check(args.method)
    budget_params(args.budget, args.budget_params, 1)  # validate before any output
    sites = backbone_sites(args.backbone, args.vocab_size)
    total = sites.backbone_params
    print(f"backbone {args.backbone} ({sites.family}): {total:,} parameters")
    if sites.head_params:
        print(f"task head (not counted in the budget): {sites.head_params:,} parameters")
    if args.space:
        space = build_space(args.space, sites, backbone_name=args.backbone)
        info = space.describe()
        per_op = ", ".join(f"{op} {n}" for op, n in info["per_op"].items())
        print(f"space {args.space}: {info['modules']} modules ({info['sized_modules']} with a size "
              f"in {tuple(info['sizes'])}; {per_op})")
        print(f"full size (every module at its largest size): {info['full_size']:,} "
              f"({_ratio(info['full_size'], total)})")
    else:
        method = METHODS.get(args.method)()
        if method.kind != "manual":
            raise UsageError(f"--method {args.method} searches its architecture; count it with --space")
        arch = method.architecture(sites, args.backbone)
        n = count_params(sites, arch)
        print(f"method {args.method}: {n:,} trainable parameters ({_ratio(n, total)}) in {len(arch)} modules")
    budget = budget_params(args.budget, args.budget_params, total)
    if budget is not None:
        print(f"budget: {budget:,} parameters ({_ratio(budget, total)})")
    return 0


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_seeds(text: str) -> tuple[int, ...]:
    seeds = []
    for item in _split(text):
        try:
            seeds.append(int(item))
        except ValueError:
            raise UsageError(f"--seeds takes comma-separated integers (e.g. 0,1,2), got {item!r}") from None
    if not seeds:
        raise UsageError("--seeds is empty")
    return tuple(seeds)


def parse_budgets(text: str) -> tuple[float, ...]:
    out = []
    for item in _split(text):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"--budget takes comma-separated fractions (e.g. 1.39e-4), got {item!r}") from None
        budget_params(value, None, 1)
        out.append(value)
    return tuple(out)


def parse_method_options(items: list[str] | None) -> dict[str, dict]:
    """``--method-option bipeft.code_compat=true`` -> ``{"bipeft": {"code_compat": True}}``."""
    import json

    options: dict[str, dict] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        method, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise UsageError(f"--method-option takes METHOD.KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method, {})[field] = value
    return options


PLAN_ARGS = ("methods", "space", "tasks", "backbone", "budget", "budget_params", "seeds", "data_dir", "epochs",
             "max_steps", "max_train_samples", "max_eval_samples", "scoring", "method_option")


def make_plan(args: argparse.Namespace):
    """Validate every input and build the run plan; nothing is written before this succeeds."""
    from pathlib import Path

    from methods import METHODS
    from spaces import SPACES, build_space
    from suite.backbones import backbone_sites
    from suite.plan import OFFLINE_BACKBONE, OFFLINE_HARNESS, OFFLINE_TASK, PAPER_BUDGET, RunPlan
    from suite.tasks import expand_tasks

    if not args.methods:
        raise UsageError("run needs --methods, e.g. --methods lora,bitfit (see `python -m suite ls methods`)")
    methods = _split(args.methods)
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
    for name in ("epochs", "max_steps", "max_train_samples", "max_eval_samples"):
        value = getattr(args, name)
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
        budgets = (PAPER_BUDGET,)
    searched = [m for m in methods if METHODS.get(m).kind != "manual"]
    if searched:
        space_obj = build_space(space, sites)
        wanted = [args.budget_params] if args.budget_params is not None else [budget_params(b, None, total) for b in budgets]
        for m in searched:
            method = METHODS.get(m)(options.get(m))
            capacity = method.capacity(space_obj) if hasattr(method, "capacity") else space_obj.full_size()
            for b in wanted:
                if b < 1:
                    raise UsageError(f"budget {b} rounds to zero parameters on this backbone")
                if b > capacity:
                    whole = "the whole" if capacity == space_obj.full_size() else f"what {m} can hold in the"
                    raise UsageError(f"budget {b:,} parameters is larger than {whole} {space} space "
                                     f"({capacity:,} = {capacity / total:.3g} of the backbone); choose a smaller one")
    harness = {k: getattr(args, k) for k in ("epochs", "max_steps", "max_train_samples", "max_eval_samples", "scoring")
               if getattr(args, k) is not None}
    if args.tasks is None and args.backbone is None:  # the offline default: sized for a CPU (see plan.py)
        harness = {**{k: v for k, v in OFFLINE_HARNESS.items()
                      if not (k == "epochs" and "max_steps" in harness)}, **harness}
    return RunPlan(methods=tuple(methods), space=space, tasks=tuple(tasks), backbone=backbone, seeds=seeds,
                   budgets=budgets, budget_params=args.budget_params, data_dir=args.data_dir, harness=harness,
                   method_options=options, backbone_params=total)


def cmd_run(args: argparse.Namespace) -> int:
    import datetime
    import os
    from pathlib import Path

    from suite.plan import PLAN_FILE, RunPlan
    from suite.stages import Cluster, Interrupted, Runner

    if args.cpus_per_trial is not None and args.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}")
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        raise UsageError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial}")
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR, the folder of the run to continue")
        given = [f"--{a.replace('_', '-')}" for a in PLAN_ARGS if getattr(args, a) not in (None, [])]
        if given:
            raise UsageError(f"--resume continues the saved run in {args.out}; drop {', '.join(given)}")
        plan = RunPlan.load(Path(args.out))
        out = Path(args.out)
    else:
        plan = make_plan(args)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(args.out or f"results/runs/{stamp}")
        if (out / PLAN_FILE).exists():
            raise UsageError(f"{out} already holds a run: add --resume to continue it, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        plan.save(out)
    offline_default = not args.resume and args.tasks is None and args.backbone is None
    settings = ", ".join(f"{k}={v}" for k, v in plan.harness.items())
    print(f"run: {','.join(plan.methods)} on {','.join(plan.tasks)} with {plan.backbone}, space {plan.space}, "
          f"seeds {','.join(map(str, plan.seeds))}{f' ({settings})' if settings else ''} -> {out}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cluster = Cluster(cpus_per_trial=args.cpus_per_trial or 1.0,
                      gpus_per_trial=args.gpus_per_trial or 0.0, max_failures=args.max_failures)
    try:
        Runner(plan, out, cluster, resume=args.resume).run()
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"interrupted ({e or 'Ctrl+C'}); every finished record is kept in {out / 'records'}. Continue with:\n"
              f"  python -m suite run --resume --out {out}", file=sys.stderr)
        return 130
    try:
        from suite.report import write_reports
    except ImportError:
        write_reports = None
    if write_reports is not None:
        for path in write_reports(out):
            print(f"wrote {path}")
    print(f"records in {out / 'records'}; rebuild tables with `python -m suite table --out {out}`")
    if offline_default:
        print("This was the offline default (all-MiniLM-L6-v2 on demo/rotten_tomatoes). The paper's setting, "
              "on a GPU cluster:\n  python -m suite run --methods " + ",".join(plan.methods) +
              " --backbone t5-large --space s2 --tasks glue --budget 1.39e-4 --seeds 0,1,2 --gpus-per-trial 1")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "methods":
        from methods import METHODS

        for name in METHODS:
            cls = METHODS.get(name)
            print(f"{name:18s} {cls.kind:10s} {cls.paper}")
    elif args.what == "spaces":
        from spaces import SPACES

        for name in SPACES:
            print(f"{name:6s} {SPACES.get(name).description}")
    elif args.what == "families":
        from spaces.sites import FAMILIES, FAMILY_NAMES

        for fam, label in FAMILY_NAMES.items():
            types = ", ".join(t for t, f in FAMILIES.items() if f == fam)
            print(f"{fam:6s} {label}; model types: {types}")
    elif args.what == "tasks":
        from suite.tasks import TASKS

        for name in TASKS:
            print(name)
    elif args.what == "options":
        print_options(args.method)
    return 0


def print_options(name: str | None) -> None:
    """Each ``--method-option METHOD.KEY=VALUE`` key of a method: default and help."""
    import dataclasses

    from methods import METHODS

    if name is None:
        raise UsageError("ls options needs a method, e.g. `python -m suite ls options bipeft`")
    config = METHODS.get(name).Config
    if config is None:
        print(f"{name} takes no options")
        return
    for field in dataclasses.fields(config):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        print(f"{name}.{field.name}={default!r}\n    {field.metadata.get('help', '')}")


def cmd_table(args: argparse.Namespace) -> int:
    from suite.report import write_reports

    for path in write_reports(args.out):
        print(path)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from suite.records import record_files, validate_dir

    problems = validate_dir(args.out)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{len(record_files(args.out))} records valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m suite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    count = sub.add_parser("count", help="count the parameters of a space or a manual method (config only)")
    count.add_argument("--backbone", required=True, help="hub id, local directory with config.json, or a tiny-* name")
    count.add_argument("--vocab-size", type=int, help="resize the vocabulary (the paper's T5-large uses 32100)")
    count.add_argument("--space", help="s1 or s2")
    count.add_argument("--method", help="a manual baseline: lora, adapter, bitfit, lnfit, full")
    count.add_argument("--budget", type=float, help="a budget as a fraction of the backbone (1.39e-4 = 1.39‱)")
    count.add_argument("--budget-params", type=int, help="a budget as an absolute parameter count")
    count.set_defaults(func=cmd_count)

    run = sub.add_parser("run", help="search and retrain methods on tasks (Ray Tune stages)",
                         description="With no --tasks/--backbone: the offline default, all-MiniLM-L6-v2 on "
                                     "demo/rotten_tomatoes.")
    run.add_argument("--methods", help="comma-separated methods, e.g. bipeft,s3delta or lora,bitfit")
    run.add_argument("--space", help="s1 or s2 (default s2)")
    run.add_argument("--tasks", help="comma-separated tasks or a group: glue, superglue (default demo/rotten_tomatoes)")
    run.add_argument("--backbone", help="hub id or local path (default all-MiniLM-L6-v2, offline)")
    run.add_argument("--budget", help="comma-separated fractions of the backbone (default 1.39e-4 = 1.39‱)")
    run.add_argument("--budget-params", type=int, help="an absolute budget in parameters")
    run.add_argument("--seeds", help="comma-separated integer seeds (default 0)")
    run.add_argument("--data-dir", help="local GLUE/SuperGLUE files in their original formats (see README)")
    run.add_argument("--out", help="output folder (default results/runs/<timestamp>)")
    run.add_argument("--epochs", type=int, help="epochs of search and retrain (default: the task's paper epochs)")
    run.add_argument("--max-steps", type=int, help="a cap on training steps instead of epochs")
    run.add_argument("--max-train-samples", type=int, help="use at most N training examples")
    run.add_argument("--max-eval-samples", type=int, help="use at most N validation/test examples")
    run.add_argument("--scoring", help="T5 scoring: generate (the paper) or label_tokens")
    run.add_argument("--method-option", action="append", metavar="METHOD.KEY=VALUE",
                     help="a method config option (repeatable), e.g. bipeft.code_compat=true")
    run.add_argument("--address", help="a running Ray cluster (default: local Ray)")
    run.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    run.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default 0)")
    run.add_argument("--max-failures", type=int, default=1, help="retries of a crashed trial (default 1)")
    run.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    run.set_defaults(func=cmd_run)

    ls = sub.add_parser("ls", help="list methods, spaces, tasks, families, or a method's options")
    ls.add_argument("what", choices=("methods", "spaces", "tasks", "families", "options"))
    ls.add_argument("method", nargs="?", help="with `options`: the method whose --method-option keys to list")
    ls.set_defaults(func=cmd_ls)

    table = sub.add_parser("table", help="rebuild the leaderboard, tables and plots of a run from its records")
    table.add_argument("--out", required=True, help="the run's output folder (holding records/)")
    table.set_defaults(func=cmd_table)

    validate = sub.add_parser("validate", help="check every record of a run against the schema")
    validate.add_argument("--out", required=True, help="the run's output folder (holding records/)")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, UnknownName, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
