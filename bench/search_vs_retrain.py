"""Search cost relative to retrain cost, per method, in one run (BIPEFT Table 3 style).

For each method: search an architecture on the task's search splits (one-shot methods: ``search``;
black-box methods: their ``Searcher`` driven in a plain loop, each candidate proxy-trained by the
harness at the method's fidelity), then retrain the found architecture with the same harness
settings and score it on test. Prints search seconds, retrain seconds (training loop, evaluations
included), their ratio, the found architecture's parameters and the test metric. Everything runs in
this process, one method after the other, so the ratios compare like with like.

Default setting (issues 4-6): all-MiniLM-L6-v2, glue/rte from ../shared/data, budget 1e-3 of the
backbone, S2 for the differentiable/pruning methods and S1 for AutoPEFT, 10 epochs for search and
retrain. The paper reports search/retrain of 0.59-0.65 (BIPEFT), 6.3 (S3Delta), 1.0 (PrunePEFT),
15.8 (AutoPEFT).

    python bench/search_vs_retrain.py [--methods bipeft,bipeft-noselect,s3delta,prunepeft,autopeft]
        [--epochs 10] [--threads 2] [--autopeft-candidates 12] [--out bench-results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SPACE_OF = {"autopeft": "s1"}


def run_black_box(method, space, budget: int, seed: int, proxy) -> tuple:
    """Drive a black-box method's Searcher in a plain loop; each candidate proxy-trained."""
    from methods.base import PARAMS, RATIO, SCORE, SearchProblem

    problem = SearchProblem(space, budget, seed)
    searcher = method.make_searcher(problem, metric=SCORE, mode="max")
    results = []
    for i in range(method.num_candidates()):
        trial_id = f"c{i}"
        config = searcher.suggest(trial_id)
        arch = method.candidate(space, config)
        start = time.perf_counter()
        result = proxy.retrain(arch, test=False)
        metrics = {SCORE: result.validation[proxy.task.selection_metric], RATIO: result.ratio,
                   PARAMS: result.peft_params}
        searcher.on_trial_complete(trial_id, metrics)
        results.append({"config": config, **metrics, "seconds": time.perf_counter() - start})
        print(f"    candidate {i}: {metrics[PARAMS]:,} params, val {metrics[SCORE]:.2f}", flush=True)
    selected = method.select(problem, results)
    return selected.architecture, {"candidates": len(results),
                                   **{k: v for k, v in selected.info.items() if k != "pareto"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="bipeft,bipeft-noselect,s3delta,prunepeft,autopeft")
    parser.add_argument("--task", default="glue/rte")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--budget", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--max-train-samples", type=int, help="subsample train (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--autopeft-candidates", type=int, default=12)
    parser.add_argument("--autopeft-fidelity", default='{"train_fraction": 0.25, "epochs": 2}',
                        help="JSON HarnessConfig overrides of each AutoPEFT candidate")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from methods import get_method
    from spaces import build_space
    from suite.harness import Experiment, HarnessConfig
    from suite.tasks import get_task, load_splits

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    splits = load_splits(task, args.seed, args.data_dir)
    harness = {"epochs": args.epochs, "max_source_length": args.max_source_length,
               "max_train_samples": args.max_train_samples}
    exp = Experiment(task, splits, args.backbone, args.seed, HarnessConfig(**harness))
    budget = round(args.budget * exp.sites.backbone_params)
    print(f"{args.task} ({splits.sizes()}), {args.backbone}, budget {budget:,} ({args.budget:g}), "
          f"{args.epochs} epochs, {args.threads} threads", flush=True)
    rows = []
    for name in args.methods.split(","):
        space = build_space(SPACE_OF.get(name, "s2"), exp.sites, backbone_name=args.backbone)
        print(f"\n{name} ({space.name}):", flush=True)
        start = time.perf_counter()
        if name == "autopeft":
            fidelity = json.loads(args.autopeft_fidelity)
            method = get_method(name, {"candidates": args.autopeft_candidates,
                                       "n_init": max(2, args.autopeft_candidates // 2), "q": 1, **fidelity})
            proxy = Experiment(task, splits, args.backbone, args.seed, HarnessConfig(**{**harness, **fidelity}))
            arch, info = run_black_box(method, space, budget, args.seed, proxy)
        else:
            method = get_method(name)
            result = method.search(exp.search_context(space, budget))
            arch = result.architecture
            info = {k: v for k, v in result.info.items() if k in ("stop_reason", "steps", "planned_steps", "triggers")}
        search_s = time.perf_counter() - start
        result = exp.retrain(arch)
        retrain_s = result.train_time_s
        row = {"method": name, "space": space.name, "search_s": search_s, "retrain_s": retrain_s,
               "ratio": search_s / retrain_s, "params": result.peft_params, "budget": budget,
               "val": result.validation, "test": result.test, "search": info}
        rows.append(row)
        print(f"  search {search_s:7.1f} s  retrain {retrain_s:7.1f} s  ratio {row['ratio']:.2f}  "
              f"params {result.peft_params:,}  test {result.test}  {info}", flush=True)
    print("\nmethod            space  search s  retrain s  search/retrain  params    test")
    for r in rows:
        metric = next(iter(r["test"].values()))
        print(f"{r['method']:17s} {r['space']:5s} {r['search_s']:9.1f} {r['retrain_s']:10.1f} "
              f"{r['ratio']:15.2f}  {r['params']:7,}  {metric:6.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
