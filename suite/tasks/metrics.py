"""Task metrics as in S3Delta / BIPEFT (methods.md §7.3), all ×100.

S3Delta computes them with sklearn / scipy / T5's ``qa_utils`` on strings
(``examples_seq2seq/metrics/metrics.py``); here they take parsed predictions, where ``None`` is
an invalid output (a T5 generation that is not a label). How each metric treats ``None``:

* accuracy, exact matches: wrong.
* ``f1`` (MRPC, QQP) and ``f1_a`` (MultiRC): flipped to the opposite of the target, as S3Delta's
  ``f1_score_with_invalid``. With no positive target and no positive prediction the F1 is 0
  (sklearn's default ``zero_division``).
* ``macro_f1`` (CB): a miss for its target class that counts as nobody's prediction
  (``fbeta_score(average="macro", labels=range(K), zero_division=1)``).
* ``matthews_correlation`` (CoLA): a class of its own, as sklearn's ``matthews_corrcoef`` does with
  an invalid string label (the multi-class formula of Gorodkin, 2004).
* ``pearson`` / ``spearmanr`` (STS-B): -1, T5's ``string_to_float`` default. A constant input
  (undefined correlation) scores 0, as S3Delta.
* ``em`` / ``squad_f1`` (ReCoRD): the empty string.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

METRICS = ("accuracy", "f1", "macro_f1", "matthews_correlation", "pearson", "spearmanr", "f1_a", "em", "squad_f1")
INVALID_SCORE = -1.0  # T5's string_to_float default for an STS-B output that is not a number
_PUNCTUATION = frozenset(string.punctuation)


def _labels(examples: list[dict[str, Any]]) -> list[Any]:
    return [ex["label"] for ex in examples]


def accuracy(preds: list[Any], refs: list[Any]) -> float:
    """Share of predictions equal to their reference; ``None`` is wrong."""
    return 100.0 * float(np.mean([p is not None and p == r for p, r in zip(preds, refs)]))


def f1_binary(preds: list[Any], refs: list[Any]) -> float:
    """F1 of the positive class 1; an invalid prediction is flipped to the opposite of the target."""
    p = np.array([(1 - int(r)) if x is None else int(x) for x, r in zip(preds, refs)])
    r = np.array(refs, dtype=int)
    tp = int(((p == 1) & (r == 1)).sum())
    fp = int(((p == 1) & (r != 1)).sum())
    fn = int(((p != 1) & (r == 1)).sum())
    return 100.0 * (2 * tp / (2 * tp + fp + fn) if tp else 0.0)


def macro_f1(preds: list[Any], refs: list[Any], num_labels: int) -> float:
    """Mean F1 over classes (S3Delta's ``mean_multiclass_f1`` with zero_division=1)."""
    scores = []
    for c in range(num_labels):
        tp = sum(1 for p, r in zip(preds, refs) if p == c and r == c)
        fp = sum(1 for p, r in zip(preds, refs) if p == c and r != c)
        fn = sum(1 for p, r in zip(preds, refs) if p != c and r == c)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return 100.0 * float(np.mean(scores))


def matthews(preds: list[Any], refs: list[Any]) -> float:
    """Matthews correlation; ``None`` is a class of its own (it is never a reference).

    The K-class form (sklearn's): with ``c`` correct, ``s`` samples, ``p_k`` / ``t_k`` the
    predicted / true counts of class k: ``(c·s - Σ p_k t_k) / sqrt((s² - Σ p_k²)(s² - Σ t_k²))``.
    For two classes and no ``None`` this is the usual binary MCC. An undefined value is 0.
    """
    s = len(refs)
    correct = sum(1 for p, r in zip(preds, refs) if p is not None and p == r)
    pred_counts = Counter("invalid" if p is None else p for p in preds)
    true_counts = Counter(refs)
    cross = sum(pred_counts.get(k, 0) * n for k, n in true_counts.items())
    cov_pp = s * s - sum(n * n for n in pred_counts.values())
    cov_tt = s * s - sum(n * n for n in true_counts.values())
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return 100.0 * float((correct * s - cross) / np.sqrt(float(cov_pp) * float(cov_tt)))


def _correlation(name: str, preds: list[Any], refs: list[Any]) -> float:
    from scipy import stats

    p = np.array([INVALID_SCORE if x is None else float(x) for x in preds])
    r = np.array(refs, dtype=float)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return 0.0
    value = stats.pearsonr(p, r)[0] if name == "pearson" else stats.spearmanr(p, r)[0]
    return 0.0 if np.isnan(value) else 100.0 * float(value)


def normalize_answer(s: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, articles or extra spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _token_f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad(preds: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
    """ReCoRD: max EM / token F1 over the gold answers, averaged over examples (T5's ``qa_metrics``)."""
    em, f1 = [], []
    for pred, ex in zip(preds, examples):
        golds = ex["label"] or [""]
        pred = pred or ""
        em.append(max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds))
        f1.append(max(_token_f1(pred, g) for g in golds))
    return {"em": 100.0 * float(np.mean(em)), "squad_f1": 100.0 * float(np.mean(f1))}


def multirc(preds: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
    """MultiRC: F1 over all answers (f1_a) and the mean per-question exact match (em)."""
    refs = _labels(examples)
    groups: dict[Any, list[bool]] = defaultdict(list)
    for p, ex in zip(preds, examples):
        groups[ex["group"]].append(p is not None and p == ex["label"])
    return {"f1_a": f1_binary(preds, refs), "em": 100.0 * float(np.mean([all(v) for v in groups.values()]))}


# Metrics that compare each prediction with its own label: name -> f(predictions, labels, num_labels).
LABEL_METRICS: dict[str, Callable[[list[Any], list[Any], int], float]] = {
    "accuracy": lambda preds, refs, _: accuracy(preds, refs),
    "f1": lambda preds, refs, _: f1_binary(preds, refs),
    "macro_f1": macro_f1,
    "matthews_correlation": lambda preds, refs, _: matthews(preds, refs),
    "pearson": lambda preds, refs, _: _correlation("pearson", preds, refs),
    "spearmanr": lambda preds, refs, _: _correlation("spearmanr", preds, refs),
}


def compute(task, preds: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
    """Every metric of ``task`` (its ``metrics`` order; the first selects checkpoints): those of
    ``task.grouped_metrics`` where it computes them, else those of :data:`LABEL_METRICS`."""
    if len(preds) != len(examples):
        raise ValueError(f"{len(preds)} predictions for {len(examples)} examples")
    if not examples:
        raise ValueError(f"cannot score {task.name} on an empty split")
    refs = _labels(examples)
    table = task.grouped_metrics(preds, examples)
    out = {}
    for name in task.metrics:
        if name in table:
            out[name] = table[name]
        elif name in LABEL_METRICS:
            out[name] = LABEL_METRICS[name](preds, refs, task.num_labels)
        else:
            raise ValueError(f"metric {name!r} does not apply to task {task.name} ({task.kind}); "
                             f"valid metrics: {', '.join([*table, *LABEL_METRICS])}")
    return out
