"""AutoPEFT with ASHA against full fidelity: search compute and the selected architecture's test score.

Two runs of the suite on the same plan (``python -m suite run --methods autopeft ...``), one with every
candidate proxy-trained to the end and one with ``--method-option autopeft.scheduler=asha`` (rungs at
validation rounds 1, 3, 9, ... of the proxy; see ``methods/blackbox.py``), the same number of
candidates, the same proxy (validated every ``--proxy-eval-every`` steps in both runs, so each run
pays the same validations per step trained), into ``OUT/full`` and ``OUT/asha``. Per seed and on
average it prints the search compute (the sum of the candidates' trial seconds, ``trial_seconds_total``),
the search's wall time, how many candidates ASHA stopped early, and the test score and parameters of
the architecture each search selected (retrained by the suite's one harness), and writes them to
``OUT/asha_vs_full.json``. A run folder that exists is resumed (``run --resume``), so an interrupted
measurement goes on where it stopped and a finished one is only read again. Arguments this script does
not know go to both runs as they are (e.g. ``--method-option autopeft.n_restarts=2``).

The defaults (MiniLM, demo/rotten_tomatoes, 3 seeds, 8 candidates of which 4 random, each proxy one
epoch on 256 training examples validated every 4 steps: 4 rounds, rungs at 1 and 3; retrain on 512
examples for 2 epochs; 200 validation and test examples) are sized to finish within 15 minutes on 2
CPU cores (not yet timed); their test scores are on 200 examples, so only large differences show.

    python bench/asha_vs_full.py --out results/asha                 # the defaults above
    python bench/asha_vs_full.py --tasks glue/rte --out results/asha-rte  # reads --data-dir (../shared/data)
    python bench/asha_vs_full.py --out /tmp/asha-smoke --backbone tiny-bert --seeds 0 --candidates 4 \\
        --n-init 2 --max-train-samples 64 --max-eval-samples 24 --epochs 1 --proxy-train-samples 32 \\
        --proxy-eval-every 1
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import ROOT, bench_parser

MODES = {"full": [], "asha": ["autopeft.scheduler=asha"]}
# the plan both runs share: `python -m suite run` flags and their defaults (sized as the docstring says)
PLAN = {"--tasks": "demo/rotten_tomatoes", "--backbone": "all-MiniLM-L6-v2", "--seeds": "0,1,2", "--space": "s2",
        "--budget": "1e-3", "--max-train-samples": "512", "--max-eval-samples": "200", "--epochs": "2",
        "--batch-size": "16"}
# AutoPEFT's options in both runs: bench flag -> autopeft option (the proxy and the number of candidates)
SEARCH = {"candidates": "candidates", "n_init": "n_init", "proxy_train_samples": "max_train_samples",
          "proxy_epochs": "epochs", "proxy_eval_every": "eval_every"}


def suite_args(args, extra: list[str]) -> list[str]:
    """The ``python -m suite run`` arguments of both runs: the plan, AutoPEFT's options, ``extra``."""
    argv = [arg for flag in PLAN for arg in (flag, getattr(args, flag[2:].replace("-", "_")))]
    argv += ["--methods", "autopeft"] + ([] if args.tasks.startswith("demo/") else ["--data-dir", args.data_dir])
    for flag, option in SEARCH.items():
        argv += ["--method-option", f"autopeft.{option}={getattr(args, flag)}"]
    return argv + extra


def run(folder: Path, argv: list[str]) -> None:
    """``python -m suite run`` into ``folder``: a new run, or ``--resume`` of the one there."""
    from suite.rundir import RunDir

    command = ["--resume", "--out", str(folder)] if RunDir(folder).plan.is_file() else [*argv, "--out", str(folder)]
    print("$ python -m suite run " + " ".join(command), flush=True)
    done = subprocess.run([sys.executable, "-m", "suite", "run", *command], cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"the {folder.name} run stopped with exit status {done.returncode}; rerun this command to resume it")


def figures(folder: Path) -> dict[int, dict]:
    """Per seed: search compute and wall (s), candidates stopped early, the selected architecture's test
    score (the task's selection metric) and parameters."""
    from suite.rundir import load_records
    from suite.tasks import get_task

    out = {}
    for record in load_records(folder, status="ok"):
        search, metric = record["search"], get_task(record["task"]).selection_metric
        out[record["seed"]] = {"search_compute_s": search["trial_seconds_total"], "search_wall_s": record["time"]["search_s"],
                               "candidates": search["candidates"], "stopped_early": search.get("stopped_early", 0),
                               "test": record["metrics"]["test"][metric], "params": record["params"]["peft"]}
    return out


def main() -> None:
    parser = bench_parser(__doc__, data_dir=True)
    parser.add_argument("--out", required=True, help="a folder for the two runs (OUT/full, OUT/asha) and the figures")
    for flag, default in PLAN.items():
        parser.add_argument(flag, default=default, help="as `python -m suite run`'s (default %(default)s)")
    parser.add_argument("--candidates", type=int, default=8, help="candidates of each search (default %(default)s)")
    parser.add_argument("--n-init", type=int, default=4, help="AutoPEFT's random initial candidates (default %(default)s)")
    parser.add_argument("--proxy-train-samples", type=int, default=256,
                        help="training examples of each candidate's proxy (default %(default)s)")
    parser.add_argument("--proxy-epochs", type=int, default=1, help="epochs of each proxy (default %(default)s)")
    parser.add_argument("--proxy-eval-every", type=int, default=4,
                        help="validate each candidate every N steps: ASHA's rounds (default %(default)s)")
    args, extra = parser.parse_known_args()

    out = Path(args.out)
    argv = suite_args(args, extra)
    results = {}
    for mode, options in MODES.items():
        run(out / mode, argv + [arg for option in options for arg in ("--method-option", option)])
        results[mode] = figures(out / mode)

    seeds = sorted(set(results["full"]) & set(results["asha"]))
    print(f"\n{'seed':>4}  {'mode':4}  {'compute s':>10}  {'wall s':>8}  {'stopped':>9}  {'test':>7}  {'params':>9}")
    for seed in seeds:
        for mode in MODES:
            f = results[mode][seed]
            print(f"{seed:>4}  {mode:4}  {f['search_compute_s']:10.1f}  {f['search_wall_s']:8.1f}  "
                  f"{f['stopped_early']:>4}/{f['candidates']:<4}  {f['test']:7.2f}  {f['params']:9,}")
    summary = {"seeds": seeds, "runs": {mode: {str(s): results[mode][s] for s in seeds} for mode in MODES}}
    if seeds:
        compute = [results["asha"][s]["search_compute_s"] / results["full"][s]["search_compute_s"] for s in seeds]
        test = [results["asha"][s]["test"] - results["full"][s]["test"] for s in seeds]
        summary.update(compute_ratio_mean=statistics.mean(compute), test_difference_mean=statistics.mean(test))
        print(f"\nASHA / full search compute: {summary['compute_ratio_mean']:.3f} (mean of {len(seeds)} seed(s)); "
              f"test score, ASHA - full: {summary['test_difference_mean']:+.2f} points")
    (out / "asha_vs_full.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'asha_vs_full.json'}")


if __name__ == "__main__":
    main()
