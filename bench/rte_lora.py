"""Does the ``lora`` baseline on all-MiniLM-L6-v2 learn glue/rte, or ``--task``? (issue 3's real-data check)

Retrains the LoRA baseline with the shared harness on ``glue/rte`` (or ``--task``) from
``../shared/data`` and prints the validation history (train loss, validation score), the test
scores, the correct test predictions against the test split's majority class and a one-sided exact
binomial p-value against it. Not a test: on 2 CPU cores a run of 6 epochs on RTE takes ~11 minutes.

    python bench/rte_lora.py [--lr 1e-3] [--epochs 6] [--batch-size 16] [--max-source-length 128] [--max-steps N]

``--suite-recipe`` retrains with the benchmark's op settings (``suite.recipe``: LoRA at scale 16)
instead of the ops' own defaults; with ``--max-train-samples 1000 --lr 3e-4`` it is the probe behind
the README's "Which tasks learn" (CoLA, RTE).
"""

from __future__ import annotations

import time

from _common import bench_parser


def main() -> None:
    parser = bench_parser(__doc__, data_dir=True)
    parser.add_argument("--task", default="glue/rte")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--eval-every", type=int, default=78)
    parser.add_argument("--max-steps", type=int, help="cap the training steps (a smoke run)")
    parser.add_argument("--max-train-samples", type=int, help="train on at most N examples (default: all)")
    parser.add_argument("--max-eval-samples", type=int, help="validate and test on at most N examples each")
    parser.add_argument("--suite-recipe", action="store_true", help="the benchmark's op settings (suite.recipe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from scipy.stats import binomtest

    from methods import get_method
    from suite.harness import Experiment, HarnessConfig
    from suite.recipe import SUITE_OP_OPTIONS
    from suite.tasks import get_task, load_splits

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    config = HarnessConfig(device="cpu", lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                           eval_every=args.eval_every, max_source_length=args.max_source_length,
                           max_steps=args.max_steps, max_train_samples=args.max_train_samples,
                           max_eval_samples=args.max_eval_samples)
    exp = Experiment(task, load_splits(task, args.seed, args.data_dir), "all-MiniLM-L6-v2", args.seed, config)
    start = time.perf_counter()
    result = exp.retrain(get_method("lora").architecture(exp.sites, "all-MiniLM-L6-v2"),
                         op_options=SUITE_OP_OPTIONS if args.suite_recipe else None)
    for row in result.history:
        print(row)
    # From the test predictions, not result.test: CoLA scores MCC only, no accuracy
    labels = [p["gold"] for p in result.predictions]
    majority = max(labels.count(c) for c in set(labels))
    correct = sum(p["prediction"] == p["gold"] for p in result.predictions)
    p_value = binomtest(correct, len(labels), majority / len(labels), alternative="greater").pvalue
    print(f"{args.task}: {time.perf_counter() - start:.0f} s; validation {result.validation}; test {result.test} "
          f"({correct}/{len(labels)}) vs majority {majority}/{len(labels)}; one-sided p = {p_value:.3g}")


if __name__ == "__main__":
    main()
