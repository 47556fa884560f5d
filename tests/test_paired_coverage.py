"""Does ``comparison.md``'s interval cover the true difference of two methods? A simulation.

Each case is a synthetic pair of methods with a known true difference in expected accuracy. Every
training seed moves each method's accuracy by its own draw (seed noise, larger than the example
noise of a test split) and draws its own test split, on which the two methods' predictions are
paired (they agree on most examples, as real methods do). The seed-aware interval
(:func:`suite.report.stats.paired_difference`'s default, a t-interval over the per-seed differences)
must cover the truth in at least 90 % of the cases with 3 and with 5 seeds; the example bootstrap
(``interval="examples"``, the seeds held fixed, the default before) is measured beside it and printed
(``pytest -s`` shows the line).
"""

from __future__ import annotations

import numpy as np
import pytest

from suite.report import stats
from suite.tasks import get_task

SST2 = get_task("glue/sst2")  # accuracy
EXAMPLES = 200                # test examples a seed
ACCURACY = 0.75               # the reference's expected accuracy
SEED_SD = 0.04                # a method's accuracy moves by this much from one training seed to another
SHARED = 0.8                  # the share of examples on which both methods' correctness has the same cause
CASES = 400                   # cases for the seed-aware interval (a t-interval: fast)
BOOTSTRAP_CASES = 50          # the first cases also get the example bootstrap (2,000 resamples each: slower)


def pair(n_seeds: int, truth: float, rng: np.random.Generator) -> tuple[dict, dict]:
    """Seed -> prediction rows of a method and of the reference, whose expected accuracies differ by
    ``truth`` points."""
    runs, reference = {}, {}
    for seed in range(n_seeds):
        gold = rng.integers(0, 2, EXAMPLES)
        p_ref = ACCURACY + rng.normal(0, SEED_SD)
        p_run = ACCURACY + truth / 100 + rng.normal(0, SEED_SD)
        u_ref = rng.random(EXAMPLES)
        u_run = np.where(rng.random(EXAMPLES) < SHARED, u_ref, rng.random(EXAMPLES))
        for out, u, p in ((reference, u_ref, p_ref), (runs, u_run, p_run)):
            pred = np.where(u < p, gold, 1 - gold)
            out[seed] = [{"id": i, "gold": int(g), "prediction": int(q)} for i, (g, q) in enumerate(zip(gold, pred))]
    return runs, reference


def variances() -> tuple[float, float]:
    """The variance (points²) of a per-seed difference from the seeds alone, and from the test examples
    alone (two predictions differ only where their causes are not shared and exactly one is right)."""
    seed_variance = 2 * (100 * SEED_SD) ** 2
    differ = (1 - SHARED) * 2 * ACCURACY * (1 - ACCURACY)
    return seed_variance, 100 ** 2 * differ / EXAMPLES


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_the_seed_aware_interval_covers_the_truth(n_seeds):
    seed_variance, example_variance = variances()
    assert seed_variance > example_variance  # 32 > 3.75: the regime in which holding the seeds fixed misleads
    rng = np.random.default_rng(100 + n_seeds)
    covered = {"seeds": [], "examples": []}
    for case in range(CASES):
        truth = float(rng.uniform(-3, 3))
        runs, reference = pair(n_seeds, truth, rng)
        result = stats.paired_difference(SST2, runs, reference)
        assert result["over"] == "seeds" and len(result["per_seed"]) == n_seeds
        covered["seeds"].append(result["low"] <= truth <= result["high"])
        if case < BOOTSTRAP_CASES:
            old = stats.paired_difference(SST2, runs, reference, interval="examples")
            covered["examples"].append(old["low"] <= truth <= old["high"])
    new, old = np.mean(covered["seeds"]), np.mean(covered["examples"])
    print(f"\n{n_seeds} seeds: the seed-aware t-interval covers the true difference in {new:.1%} of {CASES} cases; "
          f"the example bootstrap (seeds held fixed) in {old:.1%} of {BOOTSTRAP_CASES}")
    assert new >= 0.90
    assert old < new  # the old interval's coverage, measured beside it: it misses seed noise
