"""A retrain step and a BIPEFT search step in fp32 and under bf16 autocast, side by side in one run.

Both on the packaged all-MiniLM-L6-v2 and the demo task (batch 16 x 64 tokens by default): the retrain
step is the harness's (``core.training.Trainer``) on LoRA r=8 and its task head; the BIPEFT step is
its three passes (ΔW, Θ, Φ) with the sensitivities and the indicator on the full supernet (no
trigger fires: the cost before early selection shrinks it). Rounds alternate the precisions (and
their order), so that a machine that slows down or speeds up during the run moves both alike; each
figure is the median over rounds of the milliseconds per step of ``--steps`` steps. ``--uncached``
also times both steps under bf16 as the harness ran them before ``core.training.cache_frozen_casts``
(autocast casting every frozen weight at every call): the same bits, slower.

    python bench/precision_step.py --rounds 5 --steps 10 --threads 2 [--retrain-method bitfit] [--uncached]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from _common import bench_parser

PRECISIONS = ("fp32", "bf16")


def retrain_stepper(exp, method: str = "lora"):
    """One harness training step of ``method``'s architecture (LoRA r=8 by default) and the task head on
    ``exp``'s next batch."""
    from functools import partial

    from core.batches import cycle, to_device
    from core.training import Trainer
    from methods import get_method
    from spaces.inject import inject_fixed
    from suite.recipe import SUITE_OP_OPTIONS

    task_model = exp.new_model()
    inject_fixed(task_model.model, get_method(method).architecture(exp.sites, exp.backbone), exp.sites,
                 op_options=SUITE_OP_OPTIONS)
    for p in task_model.head_parameters():
        p.requires_grad_(True)
    trainer = Trainer(task_model.parameters(), exp.config.lr, 10**6, autocast=exp.autocast)
    batches = cycle(exp.loader(exp.splits.train, train=True))
    task_model.train()
    return lambda: trainer.step(partial(task_model, to_device(next(batches), exp.device)))


def bipeft_stepper(exp, space, budget: int):
    """One BIPEFT search step at paper semantics on ``exp`` (the passes, the sensitivities, Eq. 5)."""
    from methods import get_method
    from methods.bipeft.early_selection import EarlySelector
    from methods.bipeft.equations import ModuleTable
    from methods.bipeft.gates import DisentangledWeights
    from methods.bipeft.method import BIPEFT
    from methods.bipeft.sensitivity import GradientTape
    from methods.bipeft.session import SearchSession

    cfg = get_method("bipeft").config
    run = SearchSession(exp.search_context(space, budget), cfg, DisentangledWeights)
    selector = EarlySelector(ModuleTable.from_space(space), budget, cfg)
    tape = GradientTape(run.net)
    state = {"step": 0}

    def step() -> None:
        _, tra, val, drawn = BIPEFT._paper_step(run, tape, state["step"], run.temperature(state["step"]))
        selector.update_scores(tape.scores(tra, val, selector.step_counts(drawn)))  # as BIPEFT's loop does
        selector.observe(run.arch.snapshot(), record=False)  # no trigger: the full supernet throughout
        state["step"] += 1

    return step


def experiment_arguments(doc: str, threads: int):
    """The parser of a precision benchmark: the task, backbone, space, budget, batch shape, threads,
    seed and ``--out`` (shared with ``precision_statistics.py``)."""
    parser = bench_parser(doc)
    parser.add_argument("--task", default="demo/rotten_tomatoes")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--space", default="s2")
    parser.add_argument("--budget", type=float, default=1e-3, help="fraction of the backbone")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-source-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the figures as JSON here")
    return parser


def experiment(args, precision: str, splits=None):
    """The harness's :class:`~suite.harness.Experiment` of ``args`` at ``precision``, its space and budget
    (``splits``: the task's, loaded once by the caller; loaded here when None)."""
    import torch

    from spaces import build_space
    from suite.harness import Experiment, HarnessConfig
    from suite.tasks import get_task, load_splits

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    exp = Experiment(task, splits or load_splits(task, args.seed, None), args.backbone, args.seed, HarnessConfig(
        batch_size=args.batch_size, max_source_length=args.max_source_length, device=args.device, precision=precision))
    return exp, build_space(args.space, exp.sites, backbone_name=args.backbone), round(args.budget * exp.sites.backbone_params)


def without_cast_cache(exp):
    """``exp`` with its models' linears plain ``nn.Linear`` again: under bf16, autocast casts each frozen
    weight at every call, as the harness did before ``core.training.cache_frozen_casts``."""
    from torch import nn

    from core.training import FrozenCastLinear
    from suite.harness import Experiment

    def new_model():
        model = Experiment.new_model(exp)
        for module in model.modules():
            if type(module) is FrozenCastLinear:
                module.__class__ = nn.Linear
        return model

    exp.new_model = new_model  # what the retrain step and the search context build their models with
    return exp


def ms_per_step(step, steps: int) -> float:
    step()  # not timed: the first step of a round may pay for a cold cache
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = experiment_arguments(__doc__, threads=2)
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing every step kind in both precisions")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round (after one untimed)")
    parser.add_argument("--retrain-method", default="lora", help="the retrain step's architecture (a manual method)")
    parser.add_argument("--uncached", action="store_true",
                        help="also time both bf16 steps with each frozen weight cast at every call (before the cast cache)")
    args = parser.parse_args()

    from core.training import fast_bf16

    steppers, device, splits = {}, None, None
    for precision in PRECISIONS:
        exp, space, budget = experiment(args, precision, splits)
        splits = exp.splits  # the whole task (no subsampling), loaded once for both
        steppers[("retrain", precision)] = retrain_stepper(exp, args.retrain_method)
        steppers[("bipeft", precision)] = bipeft_stepper(exp, space, budget)
        device = exp.device
    if args.uncached:
        exp, space, budget = experiment(args, "bf16", splits)
        without_cast_cache(exp)
        steppers[("retrain", "bf16 uncached")] = retrain_stepper(exp, args.retrain_method)
        steppers[("bipeft", "bf16 uncached")] = bipeft_stepper(exp, space, budget)
    precisions = sorted({p for _, p in steppers}, key=lambda p: (p != "fp32", p))
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steppers}
    for r in range(args.rounds):
        for precision in precisions if r % 2 == 0 else precisions[::-1]:
            for kind in ("retrain", "bipeft"):
                if (kind, precision) in steppers:
                    times[kind, precision].append(ms_per_step(steppers[kind, precision], args.steps))
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"{args.backbone} on {args.task}, batch {args.batch_size} x {args.max_source_length} tokens, {device}, "
          f"{args.threads} thread(s) (fast bf16 path detected: {fast_bf16(device)}); median of {args.rounds} "
          f"rounds x {args.steps} steps")
    for kind, precision in times:
        if precision == "fp32":
            continue
        fp32, low = median[kind, "fp32"], median[kind, precision]
        name = f"{kind} ({args.retrain_method})" if kind == "retrain" else kind
        print(f"  {name:16s} step  fp32 {fp32:8.1f} ms   {precision} {low:8.1f} ms   fp32 / {precision} = {fp32 / low:.2f}x"
              f"   (rounds fp32 {', '.join(f'{t:.0f}' for t in times[kind, 'fp32'])}; "
              f"{precision} {', '.join(f'{t:.0f}' for t in times[kind, precision])})")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "device": str(device),
                                              "ms_per_step": {f"{k}/{p}": v for (k, p), v in times.items()},
                                              "median_ms": {f"{k}/{p}": v for (k, p), v in median.items()}}, indent=1))


if __name__ == "__main__":
    main()
