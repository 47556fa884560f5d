"""The measurements behind the suite's retrain recipe (``suite/recipe.py``), rerun in one go.

Each line retrains one architecture on the offline default's sizes (3,000 training examples, 500
validation / test, 2 epochs, seed 0) with one setting changed, and prints validation and test
accuracy. Two studies:

* ``--study scale``: the LoRA scale (1, 4, 16) for the LoRA r=8 baseline and an APET S2 draw at the
  budget 1e-3, on ``demo/rotten_tomatoes`` and ``glue/sst2`` (mean pooling);
* ``--study s1``: why S1 architectures sat near chance: the task head's pooling (``cls``, the
  [CLS] pooler; ``mean``, what the sentence-transformers checkpoint declares), the prefix form
  (gated; zero value) and the adapter init, for the Adapter baseline and an APET S1 draw.

    python bench/recipe_probe.py --study scale      # ~12 retrains, about 35 min on 2 cores
    python bench/recipe_probe.py --study s1         # ~8 retrains
"""

from __future__ import annotations

import json
import time

from _common import bench_parser

HARNESS = {"max_train_samples": 3000, "max_eval_samples": 500, "epochs": 2}
ADAPTERS_ZERO_UP = {"adapter_serial": {"init": "zero_up"}, "adapter_parallel": {"init": "zero_up"}}

STUDIES = {
    "scale": [(arch, task, "mean", {"lora": {"scaling": scale}})
              for task in ("demo/rotten_tomatoes", "glue/sst2") for arch in ("lora", "apet-s2")
              for scale in (1.0, 4.0, 16.0)],
    "s1": [("adapter", "demo/rotten_tomatoes", "cls", {}), ("adapter", "demo/rotten_tomatoes", "mean", {}),
           ("adapter", "demo/rotten_tomatoes", "mean", {"adapter_serial": {"init": "zero_up"}}),
           ("apet-s1", "demo/rotten_tomatoes", "cls", {"prefix": {"form": "gated"}}),
           ("apet-s1", "demo/rotten_tomatoes", "mean", {"prefix": {"form": "gated"}}),
           ("apet-s1", "demo/rotten_tomatoes", "mean", {"prefix": {"form": "zero_value"}}),
           ("apet-s1", "demo/rotten_tomatoes", "mean", {"prefix": {"form": "zero_value"}, **ADAPTERS_ZERO_UP}),
           ("apet-s2", "demo/rotten_tomatoes", "cls", {})],
}


def architecture(name: str, exp, budget: int):
    from methods import get_method
    from methods.apet.draw import apet_draw, draw_rng
    from spaces import build_space

    if name.startswith("apet-"):
        space = build_space(name.split("-")[1], exp.sites)
        return apet_draw(space, budget, draw_rng(0, budget, 0))
    return get_method(name).architecture(exp.sites, exp.backbone)


def main() -> None:
    parser = bench_parser(__doc__, data_dir=True)
    parser.add_argument("--study", choices=sorted(STUDIES), default="scale")
    parser.add_argument("--budget", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="append one JSON line per retrain here")
    args = parser.parse_args()

    import torch

    from suite.harness import Experiment, HarnessConfig
    from suite.tasks import get_task, load_splits

    torch.set_num_threads(args.threads)
    print(f"{'architecture':10s} {'task':22s} {'pooling':7s} {'op options':60s} {'params':>7s} {'val':>6s} {'test':>6s}")
    for arch_name, task_name, pooling, options in STUDIES[args.study]:
        task = get_task(task_name)
        exp = Experiment(task, load_splits(task, 0, args.data_dir), "all-MiniLM-L6-v2", 0,
                         HarnessConfig(**HARNESS, pooling=pooling))
        arch = architecture(arch_name, exp, round(args.budget * exp.sites.backbone_params))
        start = time.perf_counter()
        result = exp.retrain(arch, op_options=options)
        row = {"architecture": arch_name, "task": task_name, "pooling": pooling, "op_options": options,
               "params": result.peft_params, "validation": result.validation["accuracy"],
               "test": result.test["accuracy"], "seconds": time.perf_counter() - start}
        print(f"{arch_name:10s} {task_name:22s} {pooling:7s} {json.dumps(options):60s} {result.peft_params:7,} "
              f"{row['validation']:6.1f} {row['test']:6.1f}", flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
