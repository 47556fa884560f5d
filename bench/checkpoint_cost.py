"""What a mid-trial checkpoint of a retrain costs (``--checkpoint-every``, ``suite/checkpoints.py``).

Retrains a fixed architecture on all-MiniLM-L6-v2 (pretrained, offline) through the harness, side by
side in one run (interleaved, median of repeats): with no checkpoints, and with one after every step
written as a retrain trial writes it (the loop's state, ``torch.save`` into a fresh folder; Ray Tune's
copy of that folder to the run's storage is not included). Prints the time of one step, of one save,
the state's size, the measured slow-down when saving every step, and what one save every 10 minutes
(the default) adds.

    python bench/checkpoint_cost.py [--steps 20] [--repeats 3] [--threads 2] [--methods lora]
    python bench/checkpoint_cost.py --methods full --steps 3 --repeats 1   # a 258 MB state: slow on a CPU
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import bench_parser

from methods import get_method
from suite.checkpoints import STATE_FILE, Interval
from suite.data import Splits
from suite.harness import Experiment, HarnessConfig
from suite.tasks.base import Task

TASK = Task("bench/keyword", "classification", ("sentence",), labels=("negative", "positive"), t5_prefix="bench",
            metrics=("accuracy",), batch_size=16, epochs=1)


def examples(n: int) -> list[dict]:
    words = ["the", "movie", "film", "plot", "actor", "scene", "story", "music", "ending", "cast", "script", "was"]
    return [{"sentence": " ".join(words[(i + j) % len(words)] for j in range(24)) + (" great" if i % 2 else " awful"),
             "label": i % 2, "idx": i} for i in range(n)]


class FolderStore:
    """Saves as a retrain trial does (one ``torch.save`` into a new folder), timing each save."""

    def __init__(self):
        self.seconds: list[float] = []
        self.bytes = 0

    def latest(self):
        return None

    def save(self, state, row) -> None:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / STATE_FILE
            torch.save(state, path)
            self.bytes = path.stat().st_size
        self.seconds.append(time.perf_counter() - start)


def retrain(method: str, steps: int, store: FolderStore | None) -> float:
    """Seconds per training step of one retrain of ``steps`` steps (one validation, at the end)."""
    config = HarnessConfig(max_steps=steps, eval_every=steps, max_source_length=64,
                           checkpoint_every="1" if store else "off")
    exp = Experiment(TASK, Splits(examples(16 * steps), examples(16), examples(16)), "all-MiniLM-L6-v2", 0, config)
    result = exp.retrain(get_method(method).architecture(exp.sites, "all-MiniLM-L6-v2"), test=False,
                         checkpoints=store)
    return (result.train_time_s - result.eval_time_s) / steps


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--steps", type=int, default=20, help="training steps of each retrain")
    parser.add_argument("--repeats", type=int, default=3, help="retrains of each kind (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--methods", default="lora", help="comma-separated manual baselines (lora, full, ...)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    default = Interval.parse(HarnessConfig().checkpoint_every).seconds
    print(f"all-MiniLM-L6-v2, batch 16, 64 tokens, {args.steps} steps, {args.threads} threads, median of "
          f"{args.repeats}")
    print("| method | step (s) | step, a save each (s) | one save (ms) | state (MB) | every step | every 10 min |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method in args.methods.split(","):
        plain, saving, saves, size = [], [], [], 0
        for _ in range(args.repeats):
            plain.append(retrain(method, args.steps, None))
            store = FolderStore()
            saving.append(retrain(method, args.steps, store))
            saves += store.seconds
            size = store.bytes
        step, step_saving, save = (statistics.median(v) for v in (plain, saving, saves))
        print(f"| {method} | {step:.3f} | {step_saving:.3f} | {save * 1e3:.1f} | {size / 2**20:.2f} | "
              f"{step_saving / step - 1:+.1%} | {save / default:+.4%} |")


if __name__ == "__main__":
    main()
