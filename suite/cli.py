"""``python -m suite``: run | table | export | ls | validate | count.

Every subcommand turns bad input into one clear line naming the bad value and the valid choices
(exit code 2), never a traceback (``run --verbose`` prints the traceback of its cause before it, e.g.
of a plugin that raised on import).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.registry import UnknownName
from suite.inputs import PLAN_ARGS, absolute_budget, is_offline_default, make_plan, offline_note
from suite.learning_rate import LR_GRID_HELP, LR_HELP
from suite.plan import UsageError
from suite.rundir import PLAN_FILE, RunDir, RunLock, not_a_folder, write_error_in


def _ratio(params: int, total: int) -> str:
    return f"{params / total * 1e4:.2f}‱ = {params / total * 100:.4f}%"


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
    absolute_budget(args.budget, args.budget_params, 1)  # validate before any output
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
    budget = absolute_budget(args.budget, args.budget_params, total)
    if budget is not None:
        print(f"budget: {budget:,} parameters ({_ratio(budget, total)})")
    return 0


def check_out(out, resume: bool) -> None:
    """``--out`` must be a folder (or a path that can become one), and hold a run when resuming (that a
    new run's folder holds none is checked once its lock is held: :class:`suite.rundir.RunLock`)."""
    problem = not_a_folder(out)
    if problem:
        raise UsageError(f"--out {out} {problem}: give a folder")
    if resume and not RunDir(out).plan.is_file():
        raise UsageError(f"--resume: {out} holds no run (no {PLAN_FILE}); start one without --resume")


def cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run or args.slots or args.step_costs or args.split_sizes:
        from suite.dryrun import dry_run_command

        return dry_run_command(args)
    with contextlib.ExitStack() as held:  # what the run holds until it ends: its folder's lock
        return run_in(args, held)


def run_in(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    """``python -m suite run``; every input checked before Ray starts, the run folder's lock in ``held``."""
    import datetime
    from pathlib import Path

    from suite.cluster import prepare_environment

    prepare_environment(args.address, args.verbose)  # before anything imports Ray
    from core.registry import import_plugins
    from suite.cluster import check_resources, check_storage, connect, quiet_ray
    from suite.driver import Cluster, Interrupted, Runner
    from suite.inputs import check_trial_shape
    from suite.plan import Plan
    from suite.report.tables import failed_summary
    from suite.tracking import check_tracking

    check_trial_shape(args.cpus_per_trial, args.gpus_per_trial, args.max_failures)
    check_storage(args.storage)
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR, the folder of the run to continue")
        given = [f"--{a.replace('_', '-')}" for a in PLAN_ARGS if getattr(args, a) not in (None, [], False)]
        if given:
            raise UsageError(f"--resume continues the saved run in {args.out}; drop {', '.join(given)}")
        out = Path(args.out)
        check_out(out, resume=True)
        held.enter_context(RunLock(out))
        plan = Plan.load(out)
        import_plugins(plan.plugins)
    else:
        plan = make_plan(args)
        out = Path(args.out or f"results/runs/{datetime.datetime.now():%Y%m%d-%H%M%S}")
        check_out(out, resume=False)
        held.enter_context(RunLock(out, new_run=True))
    tracking = check_tracking(plan.log, out)  # --log: its packages, before Ray starts
    cluster = Cluster(cpus_per_trial=args.cpus_per_trial or 1.0, gpus_per_trial=args.gpus_per_trial or 0.0,
                      max_failures=args.max_failures, verbose=2 if args.verbose else 0, storage=args.storage)
    connect(args.address)  # a cluster that does not answer, or is too small, is an error before anything is written
    check_resources(cluster.cpus_per_trial, cluster.gpus_per_trial)
    if not args.resume:
        plan.save(out)
    run_dir = RunDir(out)
    if not args.verbose:
        quiet_ray(run_dir.log)
    settings = ", ".join(f"{k}={v}" for k, v in plan.harness_overrides().items())
    print(f"run: {','.join(plan.methods)} on {','.join(plan.tasks)} with {plan.backbone}, space {plan.space}, "
          f"seeds {','.join(map(str, plan.seeds))}{f' ({settings})' if settings else ''} -> {out}{tracking}")
    try:
        Runner(plan, out, cluster, resume=args.resume).run()
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"interrupted ({e or 'Ctrl+C'}); every finished record is kept in {run_dir.records}. Continue with:\n"
              f"  python -m suite run --resume --out {out}", file=sys.stderr)
        return 130
    except Exception as e:
        stopped = write_error_in(e)  # the folder became read-only or full: what was written stays
        if stopped is None:
            raise
        print(failed_summary(out, {job.run_id for job in plan.jobs()}, stopped), file=sys.stderr)
        return 1
    from suite.report import make_reports

    reports = make_reports(out)
    for name in ("accuracy", "efficiency"):
        print("\n" + reports.documents[name].tables_markdown())
    print("\nwrote " + ", ".join(p.name for p in reports.paths) + f" in {out}")
    print(f"records in {run_dir.records}; rebuild tables with `python -m suite table --out {out}`")
    if not args.resume and is_offline_default(args) and plan.transfer is None:
        print(offline_note(plan))
    summary = failed_summary(out, {job.run_id for job in plan.jobs()})
    if summary:
        print(summary, file=sys.stderr)
        return 1
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
    from suite.merge import write_table

    for path in write_table(args.out, args.to, args.reference, args.paired_interval, args.reported):
        print(path)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from suite.records import validate_dir

    problems = validate_dir(args.out)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{len(RunDir(args.out).record_files())} records valid")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from suite.export import export

    print(export(args.out, args.run_id, args.to, args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m suite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    count = sub.add_parser("count", help="count the parameters of a space or a manual method (config only)")
    count.add_argument("--backbone", required=True, help="hub id, local directory with config.json, or a tiny-* name")
    count.add_argument("--vocab-size", type=int, help="resize the vocabulary (the paper's T5-large uses 32100)")
    count.add_argument("--space", help="s1 or s2")
    count.add_argument("--method", help="a manual baseline: lora, adapter, bitfit, lnfit, full, ia3, dora")
    count.add_argument("--budget", type=float, help="a budget as a fraction of the backbone (1.39e-4 = 1.39‱)")
    count.add_argument("--budget-params", type=int, help="a budget as an absolute parameter count")
    count.set_defaults(func=cmd_count)

    run = sub.add_parser("run", help="search and retrain methods on tasks (Ray Tune stages)",
                         description="With no --tasks/--backbone: the offline default, all-MiniLM-L6-v2 on "
                                     "1,500 demo/rotten_tomatoes reviews, 2 epochs, batch 8, budget 1e-3.")
    run.add_argument("--methods", help="comma-separated methods, e.g. bipeft,s3delta or lora,bitfit")
    run.add_argument("--space", help="s1 or s2 (default s2)")
    run.add_argument("--tasks", help="comma-separated tasks or a group: glue, superglue (default demo/rotten_tomatoes)")
    run.add_argument("--backbone", help="hub id or local path (default all-MiniLM-L6-v2, offline)")
    run.add_argument("--budget", help="comma-separated fractions of the backbone (default 1.39e-4 = 1.39‱; "
                                          "1e-3 on the offline default)")
    run.add_argument("--budget-params", type=int, help="an absolute budget in parameters")
    run.add_argument("--seeds", help="comma-separated integer seeds (default 0)")
    run.add_argument("--data-dir", help="local GLUE/SuperGLUE files in their original formats (see README)")
    run.add_argument("--out", help="output folder (default results/runs/<timestamp>)")
    run.add_argument("--epochs", type=int, help="epochs of search and retrain (default: the task's paper epochs)")
    run.add_argument("--max-steps", type=int, help="a cap on training steps instead of epochs")
    run.add_argument("--max-train-samples", type=int, help="use at most N training examples")
    run.add_argument("--max-eval-samples", type=int, help="use at most N validation/test examples")
    run.add_argument("--batch-size", type=int, help="training batch size (default: the task's, 32 GLUE / 16 SuperGLUE)")
    run.add_argument("--max-source-length", type=int, help="truncate inputs to N tokens (default: the task's "
                                                           "128 GLUE / 256 SuperGLUE)")
    run.add_argument("--eval-every", type=int, help="validate every N retrain steps (default: the task's interval, "
                                                    "else once per epoch)")
    run.add_argument("--scoring", help="T5 scoring: generate (the paper) or label_tokens")
    run.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                     help="'auto' (default): bf16 autocast where the device has a fast bf16 path (CUDA with bf16, a "
                          "CPU with avx512_bf16 or AMX), fp32 elsewhere; weights, optimizer state, losses and search "
                          "statistics stay fp32. Records store what ran (bf16 or fp32)")
    run.add_argument("--lr", help=LR_HELP)
    run.add_argument("--lr-grid", help=LR_GRID_HELP)
    run.add_argument("--method-option", action="append", metavar="METHOD.KEY=VALUE",
                     help="a method config option (repeatable), e.g. bipeft.code_compat=true")
    run.add_argument("--retrain-recipe", choices=("suite", "authors"),
                     help="'suite' (default): every architecture retrained with the suite's one recipe; "
                          "'authors': each with its method's published settings (rows labelled)")
    run.add_argument("--no-save-weights", action="store_true",
                     help="do not keep each retrain's trained weights (weights/<run_id>.safetensors)")
    run.add_argument("--allow-step-cap", action="store_true",
                     help="accept one-shot searches planned shorter than their method needs (rows marked)")
    run.add_argument("--architecture", metavar="FILE.json|RUN_DIR:RUN_ID",
                     help="retrain this architecture on --tasks (no search): structure transfer, kept apart "
                          "in the tables as 'METHOD (from TASK)'")
    run.add_argument("--plugin", help="comma-separated modules to import in the driver and in every trial "
                                      "(they register out-of-tree methods); importable on every node")
    run.add_argument("--address", help="a running Ray cluster: host:port of its head, or auto (the cluster this "
                     "machine joined with `ray start`); default: a local Ray instance")
    run.add_argument("--storage", help="Ray Tune's storage for trial state: a folder every node sees, or a pyarrow "
                                       "URI such as s3://bucket/path (default: <out>/ray); records stay in --out")
    run.add_argument("--log", action="append", help="tensorboard|mlflow|wandb (repeatable): log trials and records there")
    run.add_argument("--verbose", action="store_true", help="show Ray Tune's own status tables and logs")
    run.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    run.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default 0)")
    run.add_argument("--max-failures", type=int, default=1, help="retries of a crashed trial (default 1, >= 0)")
    run.add_argument("--checkpoint-every", help="a retrain trial saves its state every N steps (500), every so long "
                     "(90s, 10m, 1h; default 10m) or never (off); run again, it continues from there")
    run.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    run.add_argument("--dry-run", action="store_true", help="print the plan and its projected wall time; run nothing")
    run.add_argument("--slots", help="--dry-run on N slots, e.g. 8 or 8,64 (default: this machine's or --address's)")
    run.add_argument("--step-costs", metavar="FILE.json", help="--dry-run: given step costs (suite/stepcosts.py)")
    run.add_argument("--split-sizes", metavar="FILE.json", help="--dry-run: split sizes of tasks not at hand")
    run.set_defaults(func=cmd_run)

    ls = sub.add_parser("ls", help="list methods, spaces, tasks, families, or a method's options")
    ls.add_argument("what", choices=("methods", "spaces", "tasks", "families", "options"))
    ls.add_argument("method", nargs="?", help="with `options`: the method whose --method-option keys to list")
    ls.set_defaults(func=cmd_ls)

    table = sub.add_parser("table", help="rebuild the leaderboard, tables and plots of a run (or runs) from the records")
    table.add_argument("--out", required=True, action="append", help="a run's folder (holding records/); several: --to")
    table.add_argument("--to", help="merge the --out runs into this new folder and write one report there")
    table.add_argument("--reference", help="the method every other is compared with in comparison.md "
                                           "(default: the first searched method of the run's plan, or of a merged "
                                           "report's source runs' plans)")
    table.add_argument("--paired-interval", default="seeds", choices=("seeds", "examples"),
                       help="comparison.md's interval: 'seeds' (t over the per-seed differences; the example "
                            "bootstrap with one seed) or 'examples' (the example bootstrap, seeds held fixed)")
    table.add_argument("--reported", choices=["paper"], help="add reported.md, the paper's numbers (T5-large)")
    table.set_defaults(func=cmd_table)

    exporter = sub.add_parser("export", help="a run's found model as a folder: the suite's format or HF peft")
    exporter.add_argument("--out", required=True, help="the run's output folder (holding records/)")
    exporter.add_argument("--run-id", required=True, help="the record to export (a file name in records/, no .json)")
    exporter.add_argument("--to", required=True, help="a new folder to write")
    exporter.add_argument("--format", default="suite", choices=("suite", "peft"),
                          help="'suite' (load with spaces.pretrained.load_pretrained) or 'peft' "
                               "(PeftModel.from_pretrained; LoRA, norms, biases and the head only)")
    exporter.set_defaults(func=cmd_export)

    validate = sub.add_parser("validate", help="check every record of a run against the schema")
    validate.add_argument("--out", required=True, help="the run's output folder (holding records/)")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, UnknownName, ValueError, FileNotFoundError) as e:
        if getattr(args, "verbose", False) and e.__cause__ is not None:  # e.g. a plugin's own traceback
            import traceback

            traceback.print_exception(e.__cause__, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
