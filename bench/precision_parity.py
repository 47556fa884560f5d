"""Accuracy parity of bf16 autocast and fp32: the same runs at both precisions, paired by seed.

Runs ``python -m suite run`` twice with the same plan, ``--precision fp32`` into ``OUT/fp32`` and
``--precision bf16`` into ``OUT/bf16`` (each resumed if it is there already, so an interrupted
benchmark goes on where it stopped), then prints, per method and task, bf16 minus fp32 of the test
selection metric: each seed's difference, their mean and its 95 % t-interval over the per-seed
differences (``suite.report.stats.paired_difference``: the seeds are the replicates; with one
seed, a bootstrap over the test examples). Parity: every interval contains 0. It also prints each
precision's mean retrain minutes.

    python bench/precision_parity.py --out results/runs/precision-parity             # 3 seeds, both tasks
    python bench/precision_parity.py --out /tmp/p --seeds 0 --tasks demo/rotten_tomatoes \\
        --max-train-samples 32 --max-eval-samples 32 --epochs 1 --allow-step-cap       # a smoke run
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import ROOT, bench_parser

PRECISIONS = ("fp32", "bf16")


def run_suite(args, precision: str, out: Path) -> None:
    """``python -m suite run`` of the plan at ``precision`` into ``out`` (``--resume`` when it holds a run)."""
    from suite.inputs import OFFLINE_HARNESS

    command = [sys.executable, "-m", "suite", "run", "--out", str(out)]
    if (out / "run.json").is_file():
        command.append("--resume")
    else:
        sizes = {**OFFLINE_HARNESS, **{k: v for k, v in (("max_train_samples", args.max_train_samples),
                                                         ("max_eval_samples", args.max_eval_samples),
                                                         ("epochs", args.epochs)) if v is not None}}
        command += ["--methods", args.methods, "--tasks", args.tasks, "--backbone", args.backbone,
                    "--data-dir", args.data_dir, "--seeds", args.seeds, "--budget", args.budget,
                    "--precision", precision]
        command += [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
        command += ["--allow-step-cap"] if args.allow_step_cap else []
    command += ["--cpus-per-trial", str(args.cpus_per_trial)]
    print("$ " + " ".join(command), flush=True)
    code = subprocess.run(command, cwd=ROOT, check=False).returncode  # 1: a failed job, a record the table shows
    if code not in (0, 1):
        sys.exit(f"python -m suite run exited {code} (2: it refused the plan, see above)")


def parity(out: Path) -> list[dict]:
    """bf16 minus fp32 per method and task, paired by seed on the same test examples."""
    from suite.report.stats import load_predictions, paired_difference
    from suite.rundir import load_records
    from suite.tasks import get_task

    runs = {p: [r for r in load_records(out / p) if r["status"] == "ok"] for p in PRECISIONS}
    rows = []
    for method, task in sorted({(r["method"], r["task"]) for r in runs["fp32"]}):
        by_seed = {p: {r["seed"]: r for r in runs[p] if (r["method"], r["task"]) == (method, task)} for p in PRECISIONS}
        predictions = {p: {seed: preds for seed, r in by_seed[p].items() if (preds := load_predictions(out / p, r))}
                       for p in PRECISIONS}
        if not set(predictions["bf16"]) & set(predictions["fp32"]):
            continue
        diff = paired_difference(get_task(task), predictions["bf16"], predictions["fp32"])
        minutes = {p: statistics.fmean(r["time"]["retrain_s"] / 60 for r in by_seed[p].values()) for p in PRECISIONS}
        rows.append({"method": method, "task": task, **{k: diff[k] for k in ("difference", "low", "high", "over")},
                     "per_seed": diff["per_seed"], "contains_0": diff["low"] <= 0 <= diff["high"],
                     "retrain_min": minutes})
    return rows


def main() -> None:
    parser = bench_parser(__doc__, data_dir=True)
    parser.add_argument("--out", required=True, help="a folder for the two runs (OUT/fp32, OUT/bf16) and parity.json")
    parser.add_argument("--methods", default="lora,bitfit,bipeft")
    parser.add_argument("--tasks", default="demo/rotten_tomatoes,glue/sst2")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", default="1e-3", help="searched methods' budget (the offline default's)")
    parser.add_argument("--max-train-samples", type=int, help="default: the offline default's (suite.inputs.OFFLINE_HARNESS)")
    parser.add_argument("--max-eval-samples", type=int, help="default: the offline default's 500")
    parser.add_argument("--epochs", type=int, help="default: the offline default's 2")
    parser.add_argument("--allow-step-cap", action="store_true", help="pass --allow-step-cap (tiny smoke runs)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--report-only", action="store_true", help="only compare the runs already in --out")
    args = parser.parse_args()

    out = Path(args.out).resolve()
    if not args.report_only:
        for precision in PRECISIONS:
            run_suite(args, precision, out / precision)
    rows = parity(out)
    print("\nbf16 - fp32 of the test selection metric (x100), per seed; mean and 95 % interval")
    for r in rows:
        seeds = " ".join(f"{s}:{d:+.2f}" for s, d in r["per_seed"].items())
        print(f"  {r['method']:8s} {r['task']:22s} {r['difference']:+6.2f} [{r['low']:+6.2f}, {r['high']:+6.2f}] "
              f"over {r['over']:8s} {'contains 0' if r['contains_0'] else 'EXCLUDES 0':10s}  seeds {seeds}   "
              f"retrain min fp32 {r['retrain_min']['fp32']:.2f} bf16 {r['retrain_min']['bf16']:.2f}")
    print(f"parity (every interval contains 0): {all(r['contains_0'] for r in rows) if rows else 'no pairs'}")
    (out / "parity.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
