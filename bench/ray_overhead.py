"""Wall time of the offline default run, and Ray's share of it.

Runs, in one process and one after the other, the same jobs (default: the manual baselines
``lora,bitfit`` on the offline default, all-MiniLM-L6-v2 on demo/rotten_tomatoes):

* ``plain``: a Python loop calling the harness (``Experiment.retrain``) job after job;
* ``stages``: the Ray Tune stages of ``python -m suite run`` (``suite.driver.Runner``), local Ray
  started inside the measurement, one trial at a time with every core;
* ``cli``: the whole ``python -m suite run`` command in a subprocess (imports, Ray start, stages,
  reports), as a user sees it.

and prints the wall times and the ratios stages/plain and cli/plain.

    python bench/ray_overhead.py [--methods lora,bitfit] [--extra "--max-train-samples 2000"]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, bench_parser


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--methods", default="lora,bitfit")
    parser.add_argument("--extra", default="", help="extra `suite run` arguments, e.g. '--max-train-samples 500'")
    args = parser.parse_args()

    import torch

    from methods import get_method
    from suite.cli import build_parser
    from suite.driver import Cluster, Runner
    from suite.harness import Experiment
    from suite.inputs import make_plan
    from suite.tasks import get_task, load_splits

    argv = ["run", "--methods", args.methods, *args.extra.split()]
    plan = make_plan(build_parser().parse_args(argv))
    jobs = plan.jobs()
    cpus = os.cpu_count() or 1  # one trial at a time with every core, as the plain loop: same work

    # plain loop: the same work, no Ray
    torch.set_num_threads(cpus)
    start = time.perf_counter()
    for job in jobs:
        task = get_task(job.task)
        exp = Experiment(task, load_splits(task, job.seed, plan.data_dir), plan.backbone, job.seed,
                         plan.harness)
        exp.retrain(get_method(job.method).architecture(exp.sites, plan.backbone))
    plain = time.perf_counter() - start

    import ray

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        Runner(plan, Path(tmp) / "stages", Cluster(cpus_per_trial=cpus, verbose=0), log=lambda *a: None).run()
        stages = time.perf_counter() - start
        ray.shutdown()

        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "suite", *argv, "--cpus-per-trial", str(cpus), "--out",
                        str(Path(tmp) / "cli")], cwd=ROOT, check=True, capture_output=True)
        cli = time.perf_counter() - start

    print(f"{len(jobs)} job(s): {args.methods} on {','.join(plan.tasks)} with {plan.backbone}; "
          f"{os.cpu_count()} CPUs, {cpus} per trial")
    print(f"  plain loop      {plain:7.1f} s   1.00x")
    print(f"  Ray stages      {stages:7.1f} s   {stages / plain:.2f}x   (Ray's share: {(stages - plain) / stages:.0%})")
    print(f"  python -m suite {cli:7.1f} s   {cli / plain:.2f}x")


if __name__ == "__main__":
    main()
