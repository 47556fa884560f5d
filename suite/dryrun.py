"""``python -m suite run --dry-run``: the plan, and how long it will take on N slots, before spending it.

Nothing is written and no trial runs: the plan is made and checked as for a run
(:func:`suite.inputs.make_plan`), each trial's length is projected from what one step costs
(:mod:`suite.stepcosts`: timed here in a few seconds on the run's backbone and tasks, or given in a
file) times the steps the harness plans, and the trials are scheduled on N slots as the run's one
experiment schedules them (:func:`suite.projection.simulate`). Ray is not started, except with
``--address`` and no ``--slots``, only to count the cluster's slots.

What a trial's length is made of, what the projection leaves out, and how it schedules: :mod:`suite.projection`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from suite import projection
from suite.plan import Job, Plan, UsageError
from suite.projection import Pipeline, Schedule, all_keys, needed_keys, pipelines, search_steps, simulate
from suite.stepcosts import ANCHOR, Cost, GivenCosts, extrapolate, measure_task

SIZE_KEYS = ("train", "validation", "test")


def parse_slots(text: str | None) -> tuple[int, ...]:
    """``--slots 8`` or ``--slots 8,64``: each a positive integer."""
    if text is None:
        return ()
    values = []
    for item in text.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            value = 0
        if value < 1:
            raise UsageError(f"--slots takes positive integers, comma-separated (e.g. 8 or 8,64), got {item.strip()!r}")
        values.append(value)
    return tuple(values)


def local_slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """The trials a local Ray instance would run at once (its CPUs and GPUs, as Ray counts them)."""
    import torch

    from suite.driver import Cluster

    try:
        from ray._private.utils import get_num_cpus  # what ray.init() gives a local instance
        cpus = get_num_cpus()
    except ImportError:
        import os
        cpus = os.cpu_count() or 1
    node = {"CPU": cpus, "GPU": torch.cuda.device_count()}
    return max(1, Cluster(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial).fits(node))


def load_split_sizes(path: str | None) -> dict[str, dict[str, int]]:
    """``--split-sizes FILE.json``: ``{task: {"train": N, "validation": N, "test": N}}``, the split sizes (after
    the paper's protocol) of tasks whose data are not at hand; those tasks are not loaded."""
    if path is None:
        return {}
    from suite.tasks import get_task

    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--split-sizes {path}: cannot read it as JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--split-sizes {path}: give an object of task -> {{train, validation, test}}")
    for task, sizes in data.items():
        get_task(task)
        if not (isinstance(sizes, dict) and all(isinstance(sizes.get(k), int) and sizes[k] > 0 for k in SIZE_KEYS)):
            raise UsageError(f"--split-sizes {path}: {task} needs positive integers {', '.join(SIZE_KEYS)}, got {sizes!r}")
    return {task: {k: sizes[k] for k in SIZE_KEYS} for task, sizes in data.items()}


def task_costs(plan: Plan, task: str, given: GivenCosts | None, device: str, log=print) -> dict[str, Cost]:
    """Every cost ``task`` needs: given (scaled to the task's batch), the rest timed here. With given
    costs, a step or an evaluation timed here is carried to their device by the anchor step both time
    (:func:`suite.stepcosts.extrapolate`); a set-up timed here is taken as it is."""
    from suite.backbones import BackboneError
    from suite.tasks import get_task

    if given is None:
        return measure_task(plan, task, needed_keys(plan), device, log)
    shape = (plan.harness.train_batch_size(get_task(task)),
             plan.harness.max_source_length or get_task(task).max_source_length)
    costs = {key: cost for key in all_keys(plan) if (cost := given.for_task(key, *shape)) is not None}
    missing = [key for key in all_keys(plan) if key not in costs]
    if not missing:
        return costs
    anchor = given.for_task(ANCHOR, *shape)
    if anchor is None:
        raise UsageError(f"--step-costs {given.path} lacks {', '.join(missing)} and has no {ANCHOR} (or retrain_step) "
                         "by which to carry costs timed here over; give them in the file")
    log(f"{given.path} lacks {', '.join(missing)} for {task}: timing them here, carried over by {ANCHOR}")
    timed = {ANCHOR, *(k.replace("search_setup", "search_step") for k in missing if k.startswith("search_"))}
    timed |= {k for k in missing if k.startswith("retrain_step")}
    try:
        here = measure_task(plan, task, sorted(timed), device, log)
    except BackboneError as e:
        raise UsageError(f"--step-costs {given.path} lacks {', '.join(missing)}, and they cannot be timed here ({e}); "
                         "give them in the file") from None
    for key in missing:
        scaled = "step" in key or key == "eval_example"
        costs[key] = extrapolate(here[key], here[ANCHOR], anchor) if scaled else here[key]
    return costs


# ---- what it prints --------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """``42 s``, ``9 min 18 s``, ``3 h 05 min``, ``2 d 04 h``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def hours(seconds: float) -> str:
    """Hours with two decimals, or whole hours from 100 on (``0.02``, ``12.40``, ``1,234``)."""
    h = seconds / 3600
    return f"{h:.2f}" if h < 100 else f"{h:,.0f}"


def plan_lines(plan: Plan, lanes: list[Pipeline]) -> list[str]:
    """One row per method: its jobs and trials, and the slot-hours its trials hold."""
    by_method: dict[str, list[tuple[Job, Pipeline]]] = {}
    for job, lane in zip(plan.jobs(), lanes):
        by_method.setdefault(job.method, []).append((job, lane))
    lines = [f"{'method':16s} {'kind':10s} {'jobs':>5s} {'searches':>9s} {'candidates':>11s} {'retrains':>9s} "
             f"{'slot-hours':>11s}"]
    for method, rows in by_method.items():
        kind = rows[0][0].kind
        searches = sum(lane.kind == "one-shot" for _, lane in rows)
        per_job = {len(lane.candidates) for _, lane in rows}
        candidates = f"{max(per_job)} per job" if max(per_job) else "-"
        compute = sum(lane.search + sum(lane.candidates) + sum(lane.retrains) for _, lane in rows)
        lines.append(f"{method:16s} {kind:10s} {len(rows):5d} {searches or '-':>9} {candidates:>11s} "
                     f"{sum(len(lane.retrains) for _, lane in rows):9d} {hours(compute):>11s}")
    return lines


def task_lines(plan: Plan, sizes: dict[str, dict[str, int]], given_sizes: set[str],
               costs: dict[str, dict[str, Cost]]) -> list[str]:
    """Per task: the examples used of its splits (of all, where the harness caps them) and the steps of a
    retrain and of each one-shot search (expected of planned, where a search stops early)."""
    from suite.tasks import get_task

    lines = []
    for name in plan.tasks:
        size, cfg, task = sizes[name], plan.harness, get_task(name)
        used = {"train": cfg.train_size(size["train"]),
                **{k: projection.capped(size[k], cfg) for k in ("validation", "test")}}
        counts = " / ".join(f"{used[k]:,}" + (f" of {size[k]:,}" if used[k] < size[k] else "") for k in used)
        steps = {"retrain": f"{projection.training_steps(cfg, task, size['train'])[1]:,}"}
        for job in [j for j in plan.jobs() if j.task == name and j.kind == "one-shot"]:
            expected, planned, _ = search_steps(plan, job, size, costs[name][f"search_step:{job.method}"].over)
            steps[job.method] = f"{expected:,}" + (f" of {planned:,}" if expected < planned else "")
        where = "given by --split-sizes" if name in given_sizes else "from its data"
        lines.append(f"{name}: {counts} examples ({where}); steps: "
                     + ", ".join(f"{what} {n}" for what, n in steps.items()))
    return lines


def cost_lines(costs: dict[str, dict[str, Cost]]) -> list[str]:
    """Each task's costs, once for the tasks whose costs are the same (given costs of one batch shape)."""
    tasks_of: dict[tuple, list[str]] = {}
    for task, table in costs.items():
        tasks_of.setdefault(tuple(sorted(table.items())), []).append(task)
    lines = []
    for table, tasks in tasks_of.items():
        lines.append(f"{', '.join(tasks)}:")
        lines += [f"  {key:28s} {cost.seconds * 1000:12.1f} ms  {cost.source}" for key, cost in table]
    return lines


def projection_lines(schedules: list[Schedule], gpus_per_trial: float) -> list[str]:
    unit = "GPU-hours" if gpus_per_trial else "slot-hours"
    lines = [f"{'slots':>6s} {'wall time':>14s} {unit:>12s} {'occupancy':>10s}"]
    for s in schedules:
        lines.append(f"{s.slots:6d} {duration(s.makespan + projection.RUN_START_S + projection.RUN_END_S):>14s} "
                     f"{hours(s.compute * (gpus_per_trial or 1)):>12s} {s.occupancy:10.0%}")
    return lines


def dry_run(plan: Plan, slots: tuple[int, ...], given: GivenCosts | None, given_sizes: dict[str, dict[str, int]],
            gpus_per_trial: float, device: str, log=print) -> int:
    """Print ``plan`` and its projection on each of ``slots`` (see the module docstring)."""
    from suite.tasks import load_splits

    sizes = {task: given_sizes.get(task) or load_splits(task, plan.seeds[0], plan.data_dir).sizes()
             for task in plan.tasks}
    costs = {task: task_costs(plan, task, given, device, log) for task in plan.tasks}
    lanes = pipelines(plan, sizes, costs)
    trials = sum(bool(p.search) + len(p.candidates) + len(p.retrains) for p in lanes)
    print(f"\nplan: {len(lanes)} jobs, {trials:,} trials")
    print("\n".join(plan_lines(plan, lanes)))
    print("\ntasks (train / validation / test):\n" + "\n".join(task_lines(plan, sizes, set(given_sizes), costs)))
    print("\nstep costs:\n" + "\n".join(cost_lines(costs)))
    print(f"\nprojection (wall time: the simulated trials + the run's start-up {projection.RUN_START_S:g} s and end "
          f"{projection.RUN_END_S:g} s; each trial + {projection.TRIAL_GAP_S:g} s between trials):")
    print("\n".join(projection_lines([simulate(lanes, n) for n in slots], gpus_per_trial)))
    print("\ndry run: nothing written, no trial started")
    return 0


def dry_run_command(args: Any) -> int:
    """``run --dry-run``: the plan and its projected wall time (:mod:`suite.dryrun`); nothing written."""
    from suite.inputs import check_trial_shape, make_plan
    from suite.stepcosts import load_step_costs

    if not args.dry_run:
        given = [f"--{k.replace('_', '-')}" for k in ("slots", "step_costs", "split_sizes") if getattr(args, k)]
        raise UsageError(f"{', '.join(given)} only go with --dry-run")
    if args.resume:
        raise UsageError("--dry-run projects a new run; drop --resume")
    check_trial_shape(args.cpus_per_trial, args.gpus_per_trial)
    slots = parse_slots(args.slots)
    given = load_step_costs(args.step_costs) if args.step_costs else None
    given_sizes = load_split_sizes(args.split_sizes)
    plan = make_plan(args, known_sizes={task: sizes["train"] for task, sizes in given_sizes.items()})
    cpus, gpus = args.cpus_per_trial or 1.0, args.gpus_per_trial or 0.0
    if not slots and args.address:  # the cluster's slots: Ray joined only to count them
        from suite.cluster import check_resources, connect, prepare_environment
        from suite.driver import Cluster

        prepare_environment(args.address, args.verbose)
        connect(args.address)
        check_resources(cpus, gpus)
        slots = (Cluster(cpus_per_trial=cpus, gpus_per_trial=gpus).slots(),)
    slots = slots or (local_slots(cpus, gpus),)
    import torch

    from suite.harness import resolve_device

    device = resolve_device(plan.harness.device)
    torch.set_num_threads(max(1, int(cpus)))  # as a trial does
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
    print(f"dry run: {','.join(plan.methods)} on {','.join(plan.tasks)} with {plan.backbone}, space {plan.space}, "
          f"seeds {','.join(map(str, plan.seeds))}; costs {'from ' + args.step_costs if given else 'timed here'}")
    return dry_run(plan, slots, given, given_sizes, gpus, label)
