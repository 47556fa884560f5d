"""Which differences are real: intervals, paired comparisons and rank tests, from records and predictions.

Every statistic is recomputed from a run's folder alone: each ok retrain record keeps its test
predictions per example (``predictions/<run_id>.jsonl.gz``: ``id``, ``prediction``, ``gold`` and, for
grouped tasks, ``group``). Test splits are drawn by the run seed, so two methods with the same
task and seed are scored on the same examples (the ``id`` s and gold labels say so, and a pairing
is refused when they differ).

* :func:`seed_interval`: the 95 % t-interval of a mean over seeds (``scipy.stats.t``).
* :func:`example_interval`: with one seed, a 95 % percentile bootstrap over the test examples of the
  task's selection metric (``scipy.stats.bootstrap``).
* :func:`paired_difference`: a method minus a reference on the same examples and seeds. With two or
  more seeds its 95 % interval is a t-interval over the per-seed differences (the training seed is
  the unit of replication); with one seed, or with ``interval="examples"``, a percentile bootstrap
  that resamples each seed's test examples and holds the seeds fixed (example noise only).
  :func:`outcome` reads it as win / tie / loss (tie: the interval contains 0).
* :func:`rank_test`: average ranks over tasks, the Friedman test (``scipy.stats.friedmanchisquare``)
  and the Nemenyi post-hoc test (``scikit_posthocs.posthoc_nemenyi_friedman``), as Demšar (2006).

The bootstraps are seeded (``SEED``), so tables are reproducible. A bootstrap over a test split of
one example has no interval: it raises :class:`TooFewExamples`, and the tables print "–" with a note.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
TOO_FEW = "too few examples"  # the ``over`` of an interval that could not be computed


class TooFewExamples(ValueError):
    """A test split too small for a bootstrap interval (scipy needs two examples or more)."""


def load_predictions(out: Path, record: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The per-example test predictions a record names (None when it has none)."""
    from suite.rundir import RunFileError

    info = (record.get("files") or {}).get("predictions")
    if not info:
        return None
    path = Path(out) / info["path"]
    try:
        with gzip.open(path, "rt") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, ValueError) as e:  # a gzip or JSON line cut short, a missing file
        raise RunFileError(f"{path} cannot be read as {record['run_id']}'s predictions: {e}") from None


def _examples(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"label": r["gold"], **({"group": r["group"]} if "group" in r else {})} for r in rows]


def metric(task, rows: list[dict[str, Any]], name: str | None = None) -> float:
    """The task's metric ``name`` (default: its selection metric, ×100) of prediction rows."""
    return task.score([r["prediction"] for r in rows], _examples(rows))[name or task.selection_metric]


def batch_metric(task, rows: list[dict[str, Any]]):
    """The selection metric of many resamples at once: a function of index arrays ``[..., n]`` (each
    row a resample of ``rows``) returning one value per resample, equal to :func:`metric` on that
    resample (``tests/test_stats.py`` checks it for every metric it covers); None where the metric
    has no such form here (Spearman, MultiRC, ReCoRD), which then goes through :func:`metric`.

    It exists for speed: a bootstrap of 2,000 resamples of STS-B's 750 examples takes seconds this
    way and minutes through ``Task.score``.
    """
    from suite.tasks.metrics import INVALID_SCORE

    name = task.selection_metric
    if any("group" in r for r in rows) or name not in ("accuracy", "f1", "macro_f1", "matthews_correlation",
                                                       "pearson"):
        return None
    if name == "pearson":
        x = np.array([INVALID_SCORE if r["prediction"] is None else float(r["prediction"]) for r in rows])
        y = np.array([float(r["gold"]) for r in rows])

        def pearson(idx):
            xs, ys, n = x[idx], y[idx], idx.shape[-1]
            sx, sy = xs.sum(-1), ys.sum(-1)
            vx, vy = (xs * xs).sum(-1) - sx * sx / n, (ys * ys).sum(-1) - sy * sy / n
            cov = (xs * ys).sum(-1) - sx * sy / n
            ok = (vx > 1e-12) & (vy > 1e-12)  # a constant input scores 0, as metrics.py
            return np.where(ok, 100.0 * cov / np.sqrt(np.where(ok, vx * vy, 1.0)), 0.0)

        return pearson
    gold = np.array([int(r["gold"]) for r in rows])
    pred = np.array([-1 if r["prediction"] is None else int(r["prediction"]) for r in rows])  # -1: invalid
    if name == "accuracy":
        correct = 100.0 * (pred == gold)
        return lambda idx: correct[idx].mean(-1)
    if name == "f1":
        p = np.where(pred < 0, 1 - gold, pred)  # an invalid prediction is flipped to the opposite of the target

        def f1(idx):
            pi, gi = p[idx], gold[idx]
            tp, fp, fn = ((pi == 1) & (gi == 1)).sum(-1), ((pi == 1) & (gi != 1)).sum(-1), ((pi != 1) & (gi == 1)).sum(-1)
            return np.where(tp > 0, 100.0 * 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)

        return f1
    classes = list(range(task.num_labels))
    if name == "macro_f1":
        def macro(idx):
            pi, gi = pred[idx], gold[idx]
            scores = []
            for c in classes:
                tp, fp, fn = ((pi == c) & (gi == c)).sum(-1), ((pi == c) & (gi != c)).sum(-1), ((pi != c) & (gi == c)).sum(-1)
                den = 2 * tp + fp + fn
                scores.append(np.where(tp + fp + fn > 0, 2 * tp / np.maximum(den, 1), 1.0))
            return 100.0 * np.mean(scores, axis=0)

        return macro

    def matthews(idx):  # the K-class form of metrics.matthews, the invalid prediction a class of its own
        pi, gi = pred[idx], gold[idx]
        s = idx.shape[-1]
        correct = (pi == gi).sum(-1)
        pred_counts = [(pi == c).sum(-1) for c in [*classes, -1]]
        true_counts = [(gi == c).sum(-1) for c in classes]
        cross = sum(p * t for p, t in zip(pred_counts, true_counts))
        cov_pp = s * s - sum(p * p for p in pred_counts)
        cov_tt = s * s - sum(t * t for t in true_counts)
        ok = (cov_pp > 0) & (cov_tt > 0)
        denominator = np.sqrt(np.where(ok, cov_pp.astype(float) * cov_tt, 1.0))
        return np.where(ok, 100.0 * (correct * s - cross) / denominator, 0.0)

    return matthews


def seed_interval(values: list[float]) -> tuple[float, float]:
    """The 95 % t-interval of the mean of ``values`` (at least two)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise ValueError("an interval over seeds needs at least two seeds")
    sem = values.std(ddof=1) / math.sqrt(len(values))
    if sem == 0:
        return float(values.mean()), float(values.mean())
    low, high = stats.t.interval(LEVEL, len(values) - 1, loc=values.mean(), scale=sem)
    return float(low), float(high)


def _bootstrap(statistic, samples: tuple[np.ndarray, ...], vectorized: bool) -> tuple[float, float]:
    """A 95 % percentile bootstrap; several samples are resampled each on its own (stratified)."""
    from scipy import stats

    if min(len(sample) for sample in samples) < 2:
        raise TooFewExamples(f"a test split of {min(len(sample) for sample in samples)} example(s) has no interval")

    result = stats.bootstrap(samples, statistic, vectorized=vectorized, n_resamples=RESAMPLES, paired=False,
                             confidence_level=LEVEL, method="percentile", random_state=np.random.default_rng(SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def example_interval(task, rows: list[dict[str, Any]]) -> tuple[float, float]:
    """The 95 % bootstrap interval over test examples of one run's selection metric."""
    fast = batch_metric(task, rows)
    if fast is not None:
        return _bootstrap(lambda idx, axis=-1: fast(idx), (np.arange(len(rows)),), vectorized=True)
    return _bootstrap(lambda idx: metric(task, [rows[i] for i in idx]), (np.arange(len(rows)),), vectorized=False)


def _check_pairing(a: list[dict], b: list[dict], what: str) -> None:
    if [(r["id"], r["gold"]) for r in a] != [(r["id"], r["gold"]) for r in b]:
        raise ValueError(f"{what}: the two runs were scored on different test examples; they cannot be paired")


INTERVALS = ("seeds", "examples")


def paired_difference(task, runs: dict[int, list[dict]], reference: dict[int, list[dict]],
                      interval: str = "seeds") -> dict[str, Any]:
    """``runs`` minus ``reference`` (each: seed -> prediction rows) on the seeds both have.

    The difference is the mean over seeds of the per-seed difference of the selection metric, each
    on that seed's test examples (the same for both runs: paired). Its 95 % interval:

    * ``interval="seeds"`` (default) with two or more seeds: the t-interval (:func:`seed_interval`,
      n − 1 degrees of freedom) over the per-seed differences. The seeds are the replicates: each
      per-seed difference is one draw of training randomness and of the test split, and carries its
      examples' noise, so the interval counts both, and t's small-sample correction keeps its
      coverage with 3 seeds, where a bootstrap over 3 values cannot (``tests/test_paired_coverage.py``).
    * with one seed, or ``interval="examples"``: the percentile bootstrap that resamples each seed's
      test examples (stratified by seed) with the seeds held fixed: example noise only.

    Returns:
        ``difference``, ``low``, ``high``, ``over`` (``seeds`` or ``examples``: what the interval
        resamples; :data:`TOO_FEW` and NaN bounds where a seed's test split has one example),
        ``per_seed`` (seed -> difference), ``seeds`` and ``examples`` (their count).
    """
    if interval not in INTERVALS:
        raise ValueError(f"unknown paired interval {interval!r}; valid: {', '.join(INTERVALS)}")
    seeds = sorted(set(runs) & set(reference))
    if not seeds:
        raise ValueError("no seed in common: nothing to pair")
    for s in seeds:
        _check_pairing(runs[s], reference[s], f"seed {s}")
    per_seed = {s: metric(task, runs[s]) - metric(task, reference[s]) for s in seeds}
    diff = float(np.mean(list(per_seed.values())))
    if interval == "seeds" and len(seeds) >= 2:
        (low, high), over = seed_interval(list(per_seed.values())), "seeds"
    else:
        try:
            (low, high), over = example_bootstrap_difference(task, [runs[s] for s in seeds],
                                                             [reference[s] for s in seeds]), "examples"
        except TooFewExamples:
            low, high, over = math.nan, math.nan, TOO_FEW
    return {"difference": diff, "low": low, "high": high, "over": over, "per_seed": per_seed, "seeds": seeds,
            "examples": sum(len(runs[s]) for s in seeds)}


def example_bootstrap_difference(task, runs: list[list[dict]], reference: list[list[dict]]) -> tuple[float, float]:
    """The 95 % percentile bootstrap of the mean over seeds of ``runs[i]`` minus ``reference[i]`` (paired
    prediction rows of one seed each): each seed's test examples are resampled, stratified by seed,
    the seeds held fixed."""
    mine, theirs = [batch_metric(task, r) for r in runs], [batch_metric(task, r) for r in reference]
    indices = tuple(np.arange(len(r)) for r in runs)
    if all(f is not None for f in mine + theirs):
        def batched(*idx, axis=-1):
            return np.mean([a(i) - b(i) for a, b, i in zip(mine, theirs, idx)], axis=0)

        return _bootstrap(batched, indices, True)

    def statistic(*indices):
        return float(np.mean([metric(task, [a[i] for i in idx]) - metric(task, [b[i] for i in idx])
                              for a, b, idx in zip(runs, reference, indices)]))

    return _bootstrap(statistic, indices, False)


def outcome(low: float, high: float) -> str:
    """``win`` when the interval of (method - reference) is above 0, ``loss`` below, else ``tie``
    ("–" without an interval)."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return "win" if low > 0 else "loss" if high < 0 else "tie"


def rank_test(scores) -> dict[str, Any]:
    """Average ranks (1 = best) over the rows of ``scores`` (a DataFrame: tasks x methods, higher is
    better), the Friedman test and the Nemenyi post-hoc p-values between methods.

    With fewer than three methods or two tasks, or every method tied on every task, there is no test
    (``friedman`` is None) and the ``note`` says why; ranks are still given.
    """
    import pandas as pd

    ranks = scores.rank(axis=1, ascending=False, method="average")
    out: dict[str, Any] = {"average_rank": ranks.mean().sort_values(), "tasks": len(scores), "friedman": None,
                           "nemenyi": None, "note": ""}
    if scores.shape[1] < 3 or scores.shape[0] < 2:
        out["note"] = (f"no Friedman test: it needs at least 3 methods and 2 tasks with every method scored "
                       f"(here {scores.shape[1]} methods on {scores.shape[0]} tasks)")
        return out
    if (ranks.nunique(axis=1) == 1).all():  # the statistic would be 0/0: scipy's nan, not a result
        out["note"] = f"no Friedman test: every method tied on each of the {len(scores)} tasks"
        return out
    import scikit_posthocs as sp
    from scipy import stats

    statistic, p = stats.friedmanchisquare(*[scores[c].to_numpy() for c in scores.columns])
    out["friedman"] = {"statistic": float(statistic), "p": float(p)}
    nemenyi = sp.posthoc_nemenyi_friedman(scores.to_numpy())
    out["nemenyi"] = pd.DataFrame(nemenyi.to_numpy(), index=scores.columns, columns=scores.columns)
    return out
