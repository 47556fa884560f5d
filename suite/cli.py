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
    return 0


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

    ls = sub.add_parser("ls", help="list methods, spaces, tasks or families")
    ls.add_argument("what", choices=("methods", "spaces", "tasks", "families"))
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
