"""BIPEFT's search step against a retrain step of the same batch, side by side in one run.

A BIPEFT step at paper semantics is three passes (ΔW on a weight-train batch, Θ and Φ on an
arch-train batch), so its floor is 3 x a retrain step of the same batch size; the rest of a step
(sensitivities, indicators, Gumbel draws, host syncs) should cost little on top. This prints:

* the retrain step: seconds per training step of the architecture BIPEFT exports (the harness's
  loop, evaluations excluded);
* the search step: seconds per step of a whole BIPEFT search (to its Z triggers or the step cap),
  and of the first ``--profile-steps`` steps (the full supernet) with a per-phase breakdown;
* search step / retrain step, and the search / retrain time of this task at these epochs.

    python bench/search_step.py --task demo/rotten_tomatoes --max-train-samples 3000 --epochs 3
    python bench/search_step.py --task superglue/cb --data-dir ../shared/data    # its 40 paper epochs
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from _common import bench_parser


class PhaseTimer:
    """Wall seconds per named phase, summed over the steps it wraps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - start


def timed_bipeft(timer: PhaseTimer):
    """BIPEFT with its step's parts wrapped in ``timer`` (the method's own code, only timed)."""
    from methods.bipeft import method as bipeft_module
    from methods.bipeft.early_selection import EarlySelector
    from methods.bipeft.sensitivity import GradientTape

    cls = bipeft_module.BIPEFT

    class Timed(cls):
        @staticmethod
        def _paper_step(run, tape, step, temp):
            with timer("passes (dW, theta, phi)"):
                return cls._paper_step(run, tape, step, temp)

    for owner, name, label in ((GradientTape, "scores", "sensitivity (Eqs. 1-4)"),
                               (GradientTape, "capture", "gradient capture"),
                               (EarlySelector, "observe", "indicator, E_t, trigger (Eqs. 5, 7, 8)"),
                               (EarlySelector, "select", "selection at triggers (Eqs. 6, 9, 10)")):
        original = getattr(owner, name)

        def wrapped(self, *a, _original=original, _label=label, **k):
            with timer(_label):
                return _original(self, *a, **k)

        setattr(owner, name, wrapped)
    return Timed


def main() -> None:
    parser = bench_parser(__doc__, data_dir=True)
    parser.add_argument("--task", default="demo/rotten_tomatoes")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--budget", type=float, default=1e-3, help="fraction of the backbone")
    parser.add_argument("--space", default="s2")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--retrain-steps", type=int, default=40, help="retrain steps timed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from spaces import build_space
    from suite.harness import Experiment, HarnessConfig
    from suite.recipe import SUITE_OP_OPTIONS
    from suite.tasks import get_task, load_splits

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    splits = load_splits(task, args.seed, args.data_dir)
    harness = {k: v for k, v in (("epochs", args.epochs), ("max_train_samples", args.max_train_samples)) if v}
    exp = Experiment(task, splits, args.backbone, args.seed, HarnessConfig(**harness))
    space = build_space(args.space, exp.sites, backbone_name=args.backbone)
    budget = round(args.budget * exp.sites.backbone_params)

    timer = PhaseTimer()
    ctx = exp.search_context(space, budget, op_options=SUITE_OP_OPTIONS)  # the recipe the retrain below uses
    start = time.perf_counter()
    result = timed_bipeft(timer)().search(ctx)
    search_s = time.perf_counter() - start
    steps = result.info["steps"]

    capped = Experiment(task, splits, args.backbone, args.seed,
                        HarnessConfig(**harness, max_steps=args.retrain_steps, eval_every=10**9))
    retrain = capped.retrain(result.architecture, op_options=SUITE_OP_OPTIONS, test=False)
    retrain_step = (retrain.train_time_s - retrain.eval_time_s) / retrain.steps
    planned_retrain = exp.config.planned_steps(len(exp.loader(exp.splits.train, train=True)), exp.retrain_epochs)

    search_step = search_s / steps
    figures = {
        "task": args.task, "backbone": args.backbone, "space": args.space, "budget": budget,
        "threads": args.threads, "search_steps": steps, "stop_reason": result.info["stop_reason"],
        "search_s": search_s, "search_step_s": search_step, "retrain_step_s": retrain_step,
        "step_ratio": search_step / retrain_step, "planned_retrain_steps": planned_retrain,
        "search_over_retrain": search_s / (retrain_step * planned_retrain),
        "phases_s": dict(timer.seconds),
    }
    print(f"{args.task}, {args.backbone}, {args.space}, budget {budget:,}, {args.threads} thread(s)")
    print(f"  retrain step            {retrain_step:7.3f} s  (architecture of {retrain.peft_params:,} params)")
    print(f"  search step             {search_step:7.3f} s  ({steps} steps, {result.info['stop_reason']})"
          f"   = {figures['step_ratio']:.2f} x the retrain step (floor: 3 passes)")
    for name, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        print(f"    {name:38s} {seconds / steps:7.3f} s/step  ({seconds / search_s:5.1%})")
    print(f"  search / retrain time   {figures['search_over_retrain']:.2f}  "
          f"({search_s:.0f} s against {planned_retrain} retrain steps x {retrain_step:.3f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
