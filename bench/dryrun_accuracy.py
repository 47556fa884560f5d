"""Projected against real: `run --dry-run`'s wall time and trial lengths, then the same run, timed.

Projects ``python -m suite run ARGS`` as ``--dry-run`` does (in this process: step costs timed here,
the trials simulated on ``--slots``, default this machine's), then runs it (``python -m suite run
ARGS --out DIR``, a subprocess) and prints the projected and the real wall time of the command, and
per kind of trial (search, candidate, retrain) the projected and the real mean length (the real one
from the records' placements, ``bench/occupancy.py``), and what the run spent before its first trial
and after its last (the constants ``RUN_START_S`` and ``RUN_END_S`` of ``suite/projection.py``). A
trial's own length excludes Ray Tune's gap between trials; the first trial of each slot also imports
torch and transformers into its process, which the projection counts in ``RUN_START_S``.

``--cluster N`` runs it instead on a local cluster of its own (``ray.cluster_utils.Cluster``: a head
without CPUs and two workers of N logical CPUs, as ``bench/occupancy.py``), projected on 2N slots;
without run options, on ``bench/occupancy.py``'s sweep (two black-box, two one-shot and two manual jobs
on tiny-bert).

    python bench/dryrun_accuracy.py -- --methods bipeft,s3delta     # the offline default
    python bench/dryrun_accuracy.py --cluster 2                     # the small local-cluster sweep
    python bench/dryrun_accuracy.py --slots 1 -- --methods lora --backbone tiny-bert ...
"""

from __future__ import annotations

import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, bench_parser


def projected(argv: list[str], slots: int | None) -> tuple[float, dict[str, list[float]], int]:
    """The projected wall seconds of ``run ARGV``, its trials' lengths by kind, and the slots."""
    import torch

    from suite import projection
    from suite.cli import build_parser
    from suite.dryrun import local_slots, task_costs
    from suite.inputs import make_plan
    from suite.tasks import load_splits

    args = build_parser().parse_args(["run", *argv])
    plan = make_plan(args)
    slots = slots or local_slots(args.cpus_per_trial or 1.0, args.gpus_per_trial or 0.0)
    torch.set_num_threads(max(1, int(args.cpus_per_trial or 1)))
    sizes = {task: load_splits(task, plan.seeds[0], plan.data_dir).sizes() for task in plan.tasks}
    costs = {task: task_costs(plan, task, None, "cpu") for task in plan.tasks}
    schedule = projection.simulate(projection.pipelines(plan, sizes, costs), slots)
    lengths: dict[str, list[float]] = {}
    for t in schedule.trials:
        lengths.setdefault(t.kind, []).append(t.end - t.start - projection.TRIAL_GAP_S)
    return schedule.makespan + projection.RUN_START_S + projection.RUN_END_S, lengths, slots


def real(argv: list[str], out: Path, cpus_per_node: int | None) -> tuple[float, dict[str, list[float]], float, float]:
    """The wall seconds of ``run ARGV --out OUT`` (on a local cluster of two workers of ``cpus_per_node``
    CPUs, if given), its trials' lengths by kind, its start-up and its end."""
    from occupancy import job_spans, run_sweep

    if cpus_per_node:
        wall = run_sweep(ROOT, out, cpus_per_node, sweep=argv)
    else:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "suite", "run", *argv, "--out", str(out)], cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
    ended = datetime.datetime.now(datetime.timezone.utc).timestamp()
    spans = [s for job in job_spans(out)[1].values() for s in job]
    by_kind: dict[str, list[float]] = {}
    for s in spans:
        by_kind.setdefault(s.kind, []).append(s.end - s.start)
    return wall, by_kind, min(s.start for s in spans) - (ended - wall), ended - max(s.end for s in spans)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--slots", type=int, help="slots to project on (default: this machine's, as --dry-run)")
    parser.add_argument("--cluster", type=int, metavar="N", help="on a local cluster of two workers of N CPUs")
    parser.add_argument("run_args", nargs="*", help="the `python -m suite run` options, after --")
    args = parser.parse_args()
    if not args.run_args and not args.cluster:
        parser.error("give the run's options after --, or --cluster N")
    from occupancy import SWEEP

    run_args = args.run_args or SWEEP
    if args.cluster:  # read when Ray is first imported, which the projection already does
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    load = os.getloadavg()[0]
    wall_p, lengths, slots = projected(run_args, 2 * args.cluster if args.cluster else args.slots)
    with tempfile.TemporaryDirectory(prefix="dra", dir="/tmp") as tmp:
        if args.cluster:  # a cluster of its own, as bench/occupancy.py starts one: token auth, short socket paths
            os.environ["RAY_TMPDIR"] = tmp
        wall_r, by_kind, begin, end = real(run_args, Path(tmp) / "run", args.cluster)
    print(f"run {' '.join(run_args)} on {slots} slot(s) (load average {load:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after)")
    print(f"wall time: projected {wall_p:.0f} s, real {wall_r:.0f} s: projected / real = {wall_p / wall_r:.2f}")
    for kind, real_lengths in sorted(by_kind.items()):
        mine = lengths.get(kind, [0.0])
        print(f"  {kind:9s} x{len(real_lengths):3d}: mean length projected {statistics.mean(mine):7.1f} s, "
              f"real {statistics.mean(real_lengths):7.1f} s (the longest {max(real_lengths):.1f} s)")
    print(f"  the run before its first trial's start {begin:.1f} s, after its last trial's end {end:.1f} s")


if __name__ == "__main__":
    main()
