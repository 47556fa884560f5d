"""The statistics of the tables, each against a hand-computed case and against the library's own answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from suite.report import stats
from suite.tasks import get_task

SST2 = get_task("glue/sst2")    # accuracy: the vectorised path
COLA = get_task("glue/cola")    # Matthews correlation: batched from confusion counts
MULTIRC = get_task("superglue/multirc")  # grouped answers: the general path, Task.score per resample


def rows(gold, pred) -> list[dict]:
    return [{"id": i, "gold": g, "prediction": p} for i, (g, p) in enumerate(zip(gold, pred))]


def synthetic(n: int, accuracy: float, seed: int, gold=None) -> list[dict]:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n) if gold is None else gold
    pred = np.where(rng.random(n) < accuracy, gold, 1 - gold)
    return rows(gold.tolist(), pred.tolist())


def test_seed_interval_by_hand_and_by_scipy():
    values = [80.0, 82.0, 84.0]  # mean 82, s = 2, t(0.975, 2) = 4.3027: 82 ± 4.968
    low, high = stats.seed_interval(values)
    assert (low, high) == pytest.approx((82 - 4.3027 * 2 / math.sqrt(3), 82 + 4.3027 * 2 / math.sqrt(3)), abs=1e-3)
    assert (low, high) == scipy_stats.t.interval(0.95, 2, loc=82, scale=scipy_stats.sem(values))
    assert stats.seed_interval([70.0, 70.0]) == (70.0, 70.0)
    with pytest.raises(ValueError, match="two seeds"):
        stats.seed_interval([70.0])


def test_example_interval_by_hand_and_by_scipy():
    perfect = rows([0, 1] * 50, [0, 1] * 50)
    assert stats.metric(SST2, perfect) == 100.0 and stats.example_interval(SST2, perfect) == (100.0, 100.0)
    run = synthetic(300, 0.8, seed=1)
    low, high = stats.example_interval(SST2, run)
    correct = np.array([100.0 * (r["prediction"] == r["gold"]) for r in run])
    ref = scipy_stats.bootstrap((correct,), np.mean, n_resamples=stats.RESAMPLES, method="percentile",
                                random_state=np.random.default_rng(stats.SEED)).confidence_interval
    assert (low, high) == (ref.low, ref.high)
    p = correct.mean() / 100  # the normal approximation of a proportion's interval, by hand
    half = 196 * math.sqrt(p * (1 - p) / len(run))
    assert low == pytest.approx(correct.mean() - half, abs=1.5) and high == pytest.approx(correct.mean() + half, abs=1.5)
    cola_low, cola_high = stats.example_interval(COLA, run)
    assert cola_low < stats.metric(COLA, run) < cola_high
    grouped = [{**r, "group": r["id"] // 3} for r in run]
    low, high = stats.example_interval(MULTIRC, grouped)
    assert low < stats.metric(MULTIRC, grouped) < high


def test_paired_difference_by_hand():
    gold = [1, 0] * 50
    reference = rows(gold, gold)
    worse = rows(gold, [1 - g if i < 10 else g for i, g in enumerate(gold)])  # 10 of 100 wrong: -10 points
    result = stats.paired_difference(SST2, {0: worse}, {0: reference})
    assert result["difference"] == pytest.approx(-10.0) and result["seeds"] == [0] and result["examples"] == 100
    gap = np.array([-100.0] * 10 + [0.0] * 90)
    ref = scipy_stats.bootstrap((gap,), np.mean, n_resamples=stats.RESAMPLES, method="percentile",
                                random_state=np.random.default_rng(stats.SEED)).confidence_interval
    assert (result["low"], result["high"]) == (ref.low, ref.high)  # one seed: the example bootstrap
    assert result["over"] == "examples" and result["per_seed"] == {0: pytest.approx(-10.0)}
    assert stats.outcome(result["low"], result["high"]) == "loss"
    same = stats.paired_difference(SST2, {0: reference, 1: worse}, {0: reference, 1: worse})
    assert (same["difference"], same["low"], same["high"], same["over"]) == (0.0, 0.0, 0.0, "seeds")
    assert stats.outcome(0.0, 0.0) == "tie" and stats.outcome(0.5, 2.0) == "win"


def test_paired_difference_counts_the_seeds_by_hand():
    """The reference benchmark's SST-2 S3Delta − BIPEFT: +0.6 / +5.2 / +1.6 points over three seeds of
    500 examples. The t-interval over the three: mean 2.467, s = 2.419, t(0.975, 2) = 4.3027, so
    2.467 ± 4.3027 × 2.419 / √3 = [-3.54, 8.48]: a tie. The example bootstrap holds the seeds fixed
    and calls it a win."""
    gold = [1, 0] * 250
    reference = rows(gold, [1 - g if i < 125 else g for i, g in enumerate(gold)])  # 75.0
    gains = {0: 3, 1: 26, 2: 8}  # examples the method gets right that the reference does not: +0.6, +5.2, +1.6
    runs = {s: rows(gold, [g if 125 - k <= i < 125 else r["prediction"] for i, (g, r) in enumerate(zip(gold, reference))])
            for s, k in gains.items()}
    result = stats.paired_difference(SST2, runs, dict.fromkeys(gains, reference))
    assert result["per_seed"] == {0: pytest.approx(0.6), 1: pytest.approx(5.2), 2: pytest.approx(1.6)}
    mean, sd = 7.4 / 3, math.sqrt(((0.6 - 7.4 / 3) ** 2 + (5.2 - 7.4 / 3) ** 2 + (1.6 - 7.4 / 3) ** 2) / 2)
    half = 4.3027 * sd / math.sqrt(3)
    assert result["difference"] == pytest.approx(mean)
    assert (result["low"], result["high"]) == pytest.approx((mean - half, mean + half), abs=1e-3)
    assert (round(result["low"], 2), round(result["high"], 2)) == (-3.54, 8.48)
    assert result["over"] == "seeds" and stats.outcome(result["low"], result["high"]) == "tie"
    old = stats.paired_difference(SST2, runs, dict.fromkeys(gains, reference), interval="examples")
    assert old["over"] == "examples" and old["difference"] == result["difference"]
    assert stats.outcome(old["low"], old["high"]) == "win"
    with pytest.raises(ValueError, match="unknown paired interval 'folds'; valid: seeds, examples"):
        stats.paired_difference(SST2, runs, runs, interval="folds")


def test_paired_difference_over_seeds_and_the_general_path():
    gold = np.random.default_rng(0).integers(0, 2, 200)
    a = {s: synthetic(200, 0.85, seed=10 + s, gold=gold) for s in (0, 1, 2)}
    b = {s: synthetic(200, 0.75, seed=20 + s, gold=gold) for s in (0, 1)}
    result = stats.paired_difference(SST2, a, b, interval="examples")  # the bootstrap, seeds held fixed
    assert result["seeds"] == [0, 1]  # the seeds both ran
    per_seed = {s: stats.metric(SST2, a[s]) - stats.metric(SST2, b[s]) for s in (0, 1)}
    by_hand = np.mean(list(per_seed.values()))
    assert result["difference"] == pytest.approx(by_hand) and result["per_seed"] == pytest.approx(per_seed)
    assert result["low"] < by_hand < result["high"] and stats.outcome(result["low"], result["high"]) == "win"
    seed_aware = stats.paired_difference(SST2, a, b)
    assert (seed_aware["low"], seed_aware["high"]) == stats.seed_interval(list(per_seed.values()))
    mcc = stats.paired_difference(COLA, a, b, interval="examples")
    assert mcc["low"] < mcc["difference"] < mcc["high"]
    grouped = {s: [{**r, "group": r["id"] // 4} for r in runs] for s, runs in a.items()}, \
        {s: [{**r, "group": r["id"] // 4} for r in runs] for s, runs in b.items()}
    general = stats.paired_difference(MULTIRC, *grouped, interval="examples")
    assert general["seeds"] == [0, 1] and general["low"] < general["difference"] < general["high"]


def test_pairing_refuses_different_test_examples():
    with pytest.raises(ValueError, match="different test examples"):
        stats.paired_difference(SST2, {0: rows([0, 1], [0, 1])}, {0: rows([1, 1], [0, 1])})
    with pytest.raises(ValueError, match="no seed in common"):
        stats.paired_difference(SST2, {0: rows([0], [0])}, {1: rows([0], [0])})


def test_rank_test_by_hand_and_by_the_libraries():
    import scikit_posthocs as sp

    scores = pd.DataFrame({"A": [90.0, 85, 80, 70], "B": [80.0, 86, 70, 60], "C": [70.0, 60, 60, 50]},
                          index=["t1", "t2", "t3", "t4"])
    result = stats.rank_test(scores)
    # ranks per task: A 1,2,1,1; B 2,1,2,2; C 3,3,3,3
    assert result["average_rank"].to_dict() == {"A": 1.25, "B": 1.75, "C": 3.0}
    n, k, rank_sums = 4, 3, np.array([5.0, 7.0, 12.0])
    chi2 = 12 / (n * k * (k + 1)) * (rank_sums ** 2).sum() - 3 * n * (k + 1)  # Friedman's statistic, by hand
    assert result["friedman"]["statistic"] == pytest.approx(chi2)
    assert result["friedman"]["p"] == pytest.approx(scipy_stats.friedmanchisquare(*scores.T.to_numpy()).pvalue)
    expected = sp.posthoc_nemenyi_friedman(scores.to_numpy()).to_numpy()
    np.testing.assert_allclose(result["nemenyi"].to_numpy(), expected)
    assert list(result["nemenyi"].index) == ["A", "B", "C"]
    too_few = stats.rank_test(scores[["A", "B"]])
    assert too_few["friedman"] is None and "at least 3 methods" in too_few["note"]
    tied = stats.rank_test(pd.DataFrame({"A": [60.0, 50], "B": [60.0, 50], "C": [60.0, 50]}, index=["t1", "t2"]))
    assert tied["friedman"] is None and tied["note"] == "no Friedman test: every method tied on each of the 2 tasks"
    assert tied["average_rank"].to_dict() == {"A": 2.0, "B": 2.0, "C": 2.0}  # scipy would give nan


@pytest.mark.parametrize("task_name", ["glue/sst2", "glue/mrpc", "glue/cola", "superglue/cb", "glue/stsb"])
def test_batched_metrics_equal_the_tasks_own(task_name):
    """The bootstrap's vectorised metrics (accuracy, F1, macro-F1, MCC, Pearson) equal Task.score,
    invalid predictions (None) included."""
    task = get_task(task_name)
    rng = np.random.default_rng(3)
    n = 120
    if task.kind == "regression":
        gold = rng.uniform(0, 5, n)
        pred = [None if rng.random() < 0.05 else float(g + rng.normal(0, 1)) for g in gold]
    else:
        gold = rng.integers(0, task.num_labels, n)
        pred = [None if rng.random() < 0.05 else int(rng.integers(0, task.num_labels)) if rng.random() < 0.3 else int(g)
                for g in gold]
    run = rows([float(g) if task.kind == "regression" else int(g) for g in gold], pred)
    batched = stats.batch_metric(task, run)
    idx = rng.integers(0, n, (6, n))
    expected = [stats.metric(task, [run[i] for i in row]) for row in idx]
    np.testing.assert_allclose(batched(idx), expected, rtol=1e-9, atol=1e-9)
    assert stats.batch_metric(get_task("superglue/multirc"), [{**r, "group": 0} for r in run]) is None
