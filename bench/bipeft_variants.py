"""BIPEFT's variants on real tasks, run through the suite: what each search keeps and how it scores.

Issue 20 (§3) asks which form of BIPEFT's early selection to make the default, chosen by the
validation score (the selection metric), not by how close the budget lands (the export fit already
guarantees it). Each variant is one ``python -m suite run --methods bipeft`` with its
``--method-option``s, into ``OUT/<variant>`` (rerunning the script resumes an interrupted variant
with ``--resume`` and skips a finished one):

* ``default``: the method's defaults (sensitivity on what trained, ``budget_count="exported"``, no
  warm-up);
* ``expected``: ``budget_count="expected"``, Eq. 7 as printed (keep probabilities times expected sizes);
* ``authors``: ``budget_count="authors"``, the authors' code (``p_n = b_n`` for the last 10 triggers);
* ``warmup``: ``warmup_epochs=1`` before the first indicator, as the authors' scripts (SST-2: 1 epoch);
* ``allocated``: ``sensitivity="allocated"``, the form before issue 20 (each pass its own size draw,
  ``|M_n|`` the largest size).

The settings are those of the reference benchmark (``results/reference/minilm-cpu-v1/run.json``:
all-MiniLM-L6-v2, S2, budget 1e-3, 250 training and 500 evaluation examples, 8 epochs at batch 8,
validation every 64 steps, inputs cut at 128 tokens), on ``--tasks`` and ``--seeds``. The 8 epochs
plan 128 search steps, which may be too short for BIPEFT to settle: ``--epochs 24`` gives search and
retrain three times as many (the suite's ``--epochs`` sets both). Then, per variant and task, the
mean over seeds of: the kept architecture's op mix (parameters in LoRA, adapters, BitFit and LNFit,
as % of the kept parameters), how the search stopped, the triggers fired, the step of the last one,
the validation score and the test score::

    python bench/bipeft_variants.py --out results/bipeft-variants                   # the measurement
    python bench/bipeft_variants.py --out results/bipeft-variants-24 --epochs 24    # a longer search
    python bench/bipeft_variants.py --out /tmp/smoke --backbone tiny-bert --tasks demo/rotten_tomatoes \\
        --seeds 0 --max-train-samples 32 --max-eval-samples 16 --epochs 2 --allow-step-cap \\
        --option max_triggers=4 --option window=2                                   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

from _common import ROOT, bench_parser

REFERENCE = ROOT / "results" / "reference" / "minilm-cpu-v1" / "run.json"
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "expected": {"budget_count": "expected"},
    "authors": {"budget_count": "authors"},
    "warmup": {"warmup_epochs": "1"},
    "allocated": {"sensitivity": "allocated"},
}
FAMILIES = {"lora": "LoRA", "adapter_lr": "adapters", "adapter_serial": "adapters", "adapter_parallel": "adapters",
            "bitfit": "BitFit", "lnfit": "LNFit", "prefix": "prefix"}
MIX = ("LoRA", "adapters", "BitFit", "LNFit")
HARNESS_FLAGS = {"epochs": "--epochs", "max_train_samples": "--max-train-samples",
                 "max_eval_samples": "--max-eval-samples", "batch_size": "--batch-size",
                 "eval_every": "--eval-every", "max_source_length": "--max-source-length"}


def suite_command(args: argparse.Namespace, reference: dict, options: dict[str, str], out: Path) -> list[str]:
    """The ``python -m suite run`` of one variant (or its ``--resume`` when ``out`` holds a run)."""
    command = [sys.executable, "-m", "suite", "run"]
    if (out / "run.json").is_file():
        return [*command, "--resume", "--out", str(out)]
    harness = {**reference["harness"], **{k: getattr(args, k) for k in HARNESS_FLAGS if getattr(args, k) is not None}}
    command += ["--methods", "bipeft", "--space", reference["space"], "--tasks", args.tasks,
                "--backbone", args.backbone or reference["backbone"], "--seeds", args.seeds,
                "--budget", ",".join(str(b) for b in reference["budgets"]), "--data-dir", args.data_dir,
                "--out", str(out)]
    for key, flag in HARNESS_FLAGS.items():
        if harness.get(key) is not None:
            command += [flag, str(harness[key])]
    for key, value in options.items():
        command += ["--method-option", f"bipeft.{key}={value}"]
    if args.allow_step_cap:
        command.append("--allow-step-cap")
    for flag in ("cpus_per_trial", "gpus_per_trial"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return command


def op_mix(record: dict, sites) -> dict[str, float]:
    """The kept architecture's parameters per op family, as % of its parameters."""
    from spaces.architecture import Architecture
    from spaces.ops import OPS

    params: Counter[str] = Counter()
    for p in Architecture.from_dict(record["architecture"]).placements:
        params[FAMILIES[p.op]] += OPS[p.op].count(sites.spec(p.site), p.size)
    total = sum(params.values()) or 1
    return {family: 100 * params[family] / total for family in MIX}


def summarise(out: Path) -> list[dict]:
    """Per task: the mean over the variant's ok records of the op mix, triggers and scores."""
    from suite.backbones import backbone_sites
    from suite.records import read_records

    records, problems = read_records(out)
    if problems:
        print(f"  {out}: {len(problems)} invalid record(s), e.g. {problems[0]}", file=sys.stderr)
    sites, rows = {}, []
    for task in sorted({r["task"] for r in records}):
        ok = [r for r in records if r["task"] == task and r["status"] == "ok"]
        if not ok:
            rows.append({"task": task, "runs": 0, "failed": sum(r["task"] == task for r in records)})
            continue
        mixes = [op_mix(r, sites.setdefault(r["backbone"], backbone_sites(r["backbone"]))) for r in ok]
        search = [r["search"] for r in ok]
        metric = ok[0]["metrics"]["selection"]
        row = {"task": task, "runs": len(ok), "failed": sum(r["task"] == task for r in records) - len(ok),
               **{family: statistics.fmean(m[family] for m in mixes) for family in MIX},
               "kept": statistics.fmean(r["params"]["peft"] for r in ok),
               "stop": ", ".join(f"{n} {reason}" for reason, n in Counter(s["stop_reason"] for s in search).items()),
               "triggers": statistics.fmean(s["triggers"] for s in search),
               "last_trigger": mean_of(s.get("last_trigger_step") for s in search),
               "steps": statistics.fmean(s["steps"] for s in search),
               "validation": statistics.fmean(r["metrics"]["validation"][metric] for r in ok),
               "test": statistics.fmean(r["metrics"]["test"][metric] for r in ok), "metric": metric}
        rows.append(row)
    return rows


def mean_of(values) -> float | None:
    """The mean of the values that are not None (None if there are none: no trigger fired)."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def table(results: dict[str, list[dict]]) -> str:
    header = ["variant", "task", "runs", *(f"{f} %" for f in MIX), "kept", "stop", "triggers", "last trigger",
              "steps", "validation", "test"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, rows in results.items():
        for r in rows:
            if not r["runs"]:
                lines.append(f"| {variant} | {r['task']} | 0 ({r['failed']} failed) |" + " |" * (len(header) - 3))
                continue
            last = "–" if r["last_trigger"] is None else f"{r['last_trigger']:.0f}"
            runs = f"{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
            cells = [variant, r["task"], runs, *(f"{r[f]:.0f}" for f in MIX), f"{r['kept']:,.0f}", r["stop"],
                     f"{r['triggers']:.0f}", last, f"{r['steps']:.0f}", f"{r['validation']:.2f}", f"{r['test']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = bench_parser(__doc__, data_dir=True)
    parser.add_argument("--out", required=True, help="a folder: one run per variant in OUT/<variant>")
    parser.add_argument("--tasks", default="demo/rotten_tomatoes,glue/sst2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"a subset of {', '.join(VARIANTS)}")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a BIPEFT option for every variant (repeatable; a smoke run's max_triggers=4)")
    parser.add_argument("--reference", default=str(REFERENCE), help="the run.json whose settings to use")
    parser.add_argument("--backbone", help="instead of the reference's (tiny-bert for a smoke run)")
    parser.add_argument("--epochs", type=int, help="instead of the reference's 8 (search and retrain)")
    parser.add_argument("--max-train-samples", type=int, help="instead of the reference's 250")
    parser.add_argument("--max-eval-samples", type=int, help="instead of the reference's 500")
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--eval-every", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-source-length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--allow-step-cap", action="store_true", help="passed to the suite (smoke runs)")
    parser.add_argument("--cpus-per-trial", type=float)
    parser.add_argument("--gpus-per-trial", type=float)
    parser.add_argument("--summary-only", action="store_true", help="print the table of the runs in OUT, run nothing")
    args = parser.parse_args()

    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    if any("=" not in item for item in args.option):
        parser.error(f"--option takes KEY=VALUE, got {', '.join(i for i in args.option if '=' not in i)}")
    common = dict(item.split("=", 1) for item in args.option)
    reference = json.loads(Path(args.reference).read_text())
    args.data_dir = str(Path(args.data_dir).resolve())
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for variant in args.variants.split(","):
        folder = out / variant
        if not args.summary_only:
            command = suite_command(args, reference, {**common, **VARIANTS[variant]}, folder)
            print(f"{variant}: {' '.join(command[1:])}", flush=True)
            # the suite of this checkout, in the driver and (through PYTHONPATH) in its Ray workers
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            subprocess.run(command, cwd=ROOT, env=env, check=False)
        if (folder / "records").is_dir():
            results[variant] = summarise(folder)
    print(table(results))
    validation = {v: statistics.fmean(r["validation"] for r in rows) for v, rows in results.items()
                  if rows and all(r["runs"] for r in rows)}
    if validation:
        best = max(validation, key=validation.get)
        print(f"mean validation over the tasks: {', '.join(f'{v} {s:.2f}' for v, s in validation.items())}; "
              f"best: {best}")
    (out / "variants.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
