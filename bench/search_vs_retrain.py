"""Search cost relative to retrain cost, per method, in one run (the paper's Table 3 ratios).

For each method, on one task at its paper epochs (default ``superglue/cb``, 40 epochs), budget 1e-3 of
MiniLM, space S2, one thread:

* ``bipeft`` runs its whole search (it ends after its Z triggers, ~110 steps, whatever the epochs);
* ``s3delta`` (second-order DARTS, as published), ``prunepeft`` (the supernet on the whole train
  split) run ``--probe-steps`` steps of their search, and their search time is projected as the
  measured seconds per step times the steps their search plans (S3Delta: the epochs over the
  weight-train half; PrunePEFT: over the whole train split);
* ``autopeft`` proxy-trains ``--probe-candidates`` candidates at its cheap proxy fidelity
  (``--autopeft-fidelity``) and projects the compute of ``--autopeft-candidates`` (the authors' 200);
* ``apet`` draws once (no proxy training).

The retrain time of each method's architecture is its measured seconds per training step times the
retrain's planned steps (evaluations excluded, in search and retrain alike). Every figure comes from
this process, one method after another, so the ratios compare like with like; the projections are
labelled as such. The paper: BIPEFT 0.59-0.65, S3Delta 6.3, PrunePEFT 1.0, AutoPEFT 15.8.

    python bench/search_vs_retrain.py --task superglue/cb --out cb.json
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from _common import bench_parser


def retrain_step_seconds(exp_args, arch, steps: int) -> float:
    """Seconds per retrain step of ``arch`` (``steps`` steps, no evaluation)."""
    from suite.harness import Experiment, HarnessConfig
    from suite.recipe import SUITE_OP_OPTIONS

    task, splits, backbone, seed, harness = exp_args
    exp = Experiment(task, splits, backbone, seed, HarnessConfig(**harness, max_steps=steps, eval_every=10**9))
    result = exp.retrain(arch, op_options=SUITE_OP_OPTIONS, test=False)
    return (result.train_time_s - result.eval_time_s) / result.steps


def main() -> None:
    parser = bench_parser(__doc__, data_dir=True)
    parser.add_argument("--methods", default="bipeft,s3delta,prunepeft,autopeft,apet")
    parser.add_argument("--task", default="superglue/cb")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--budget", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, help="search and retrain epochs (default: the task's paper epochs)")
    parser.add_argument("--probe-steps", type=int, default=12, help="search steps timed for a projection")
    parser.add_argument("--retrain-steps", type=int, default=20, help="retrain steps timed per architecture")
    parser.add_argument("--probe-candidates", type=int, default=4)
    parser.add_argument("--autopeft-candidates", type=int, default=200)
    parser.add_argument("--autopeft-fidelity", default='{"train_fraction": 0.5, "epochs": 4, "eval_every": 1000}')
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from methods import get_method
    from methods.base import SearchProblem
    from spaces import build_space
    from suite.harness import Experiment, HarnessConfig
    from suite.recipe import SUITE_OP_OPTIONS
    from suite.tasks import get_task, load_splits

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    splits = load_splits(task, 0, args.data_dir)
    harness = {"epochs": args.epochs} if args.epochs else {}
    exp = Experiment(task, splits, args.backbone, 0, HarnessConfig(**harness))
    space = build_space("s2", exp.sites, backbone_name=args.backbone)
    budget = round(args.budget * exp.sites.backbone_params)
    retrain_steps = exp.config.planned_steps(len(exp.loader(exp.splits.train, train=True)), exp.retrain_epochs)
    exp_args = (task, splits, args.backbone, 0, harness)
    print(f"{args.task}: {splits.sizes()}, {exp.retrain_epochs} epochs ({retrain_steps} retrain steps), "
          f"budget {budget:,}, {args.threads} thread(s)", flush=True)
    rows = []
    for name in args.methods.split(","):
        ctx = exp.search_context(space, budget, op_options=SUITE_OP_OPTIONS)  # the retrain's recipe
        if name == "bipeft":
            start = time.perf_counter()
            result = get_method(name).search(ctx)
            search_s, how = time.perf_counter() - start, f"measured, {result.info['steps']} steps ({result.info['stop_reason']})"
        elif name in ("s3delta", "prunepeft"):
            planned = ctx.total_steps if name == "s3delta" else ctx.train_steps
            probe = dataclasses.replace(ctx, total_steps=args.probe_steps, train_steps=args.probe_steps)
            start = time.perf_counter()
            result = get_method(name).search(probe)
            per_step = (time.perf_counter() - start) / args.probe_steps
            search_s, how = per_step * planned, f"projected: {per_step:.2f} s/step x {planned} steps"
        elif name == "autopeft":
            fidelity = json.loads(args.autopeft_fidelity)
            method = get_method(name, {"candidates": args.probe_candidates, "n_init": args.probe_candidates, **fidelity})
            proxy = Experiment(task, splits, args.backbone, 0, HarnessConfig(**{**harness, **method.fidelity()}))
            searcher = method.make_searcher(SearchProblem(space, budget, 0))
            start = time.perf_counter()
            for i in range(args.probe_candidates):
                candidate = method.candidate(space, searcher.suggest(f"c{i}"))
                proxy.retrain(candidate, test=False)
            per = (time.perf_counter() - start) / args.probe_candidates
            result = type("R", (), {"architecture": candidate})()
            search_s = per * args.autopeft_candidates
            how = f"projected: {per:.1f} s/candidate ({fidelity}) x {args.autopeft_candidates} candidates"
        else:  # apet: one draw
            start = time.perf_counter()
            method = get_method(name)
            arch = method.candidate(space, method.make_searcher(SearchProblem(space, budget, 0)).suggest("only"))
            result = type("R", (), {"architecture": arch})()
            search_s, how = time.perf_counter() - start, "measured, one draw"
        per_retrain = retrain_step_seconds(exp_args, result.architecture, args.retrain_steps)
        retrain_s = per_retrain * retrain_steps
        row = {"method": name, "search_s": search_s, "search": how, "retrain_s": retrain_s,
               "retrain_step_s": per_retrain, "ratio": search_s / retrain_s,
               "params": space.param_count(result.architecture)}
        rows.append(row)
        print(f"  {name:10s} search {search_s:8.1f} s ({how})  retrain {retrain_s:7.1f} s "
              f"({per_retrain:.2f} s/step x {retrain_steps})  ratio {row['ratio']:.2f}", flush=True)
    print("\nmethod      search/retrain   paper")
    paper = {"bipeft": "0.59-0.65", "s3delta": "6.3", "prunepeft": "1.0", "autopeft": "15.8", "apet": "–"}
    for r in rows:
        print(f"{r['method']:10s}  {r['ratio']:14.2f}   {paper.get(r['method'], '–')}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
