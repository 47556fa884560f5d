"""Task metrics as in S3Delta / BIPEFT (methods.md §7.3), all ×100.

An invalid prediction (``None``: a T5 generation that is not a label) counts as wrong. For the F1
of MRPC/QQP it is flipped to the opposite of the target, as S3Delta's ``f1_score_with_invalid``.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from scipy import stats

METRICS = ("accuracy", "f1", "macro_f1", "matthews_correlation", "pearson", "spearmanr", "f1_a", "em", "squad_f1")


def _labels(examples: list[dict[str, Any]]) -> list[Any]:
    return [ex["label"] for ex in examples]


def accuracy(preds: list[Any], refs: list[Any]) -> float:
    return 100.0 * float(np.mean([p is not None and p == r for p, r in zip(preds, refs)]))


def f1_binary(preds: list[Any], refs: list[Any]) -> float:
    """F1 of the positive class 1; an invalid prediction is flipped to the opposite of the target."""
    p = np.array([(1 - r) if x is None else int(x) for x, r in zip(preds, refs)])
    r = np.array(refs, dtype=int)
    tp = int(((p == 1) & (r == 1)).sum())
    fp = int(((p == 1) & (r == 0)).sum())
    fn = int(((p == 0) & (r == 1)).sum())
    return 100.0 * (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)


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
    p = np.array([-1 if x is None else int(x) for x in preds])
    r = np.array(refs, dtype=int)
    tp = float(((p == 1) & (r == 1)).sum())
    tn = float(((p == 0) & (r == 0)).sum())
    fp = float(((p == 1) & (r == 0)).sum())
    fn = float(((p != 1) & (r == 1)).sum())
    # An invalid prediction on a negative example is neither tp nor tn: it lowers the score.
    fn_neg = float(((p == -1) & (r == 0)).sum())
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp + fn_neg) * (tn + fn + fn_neg))
    return 100.0 * float((tp * tn - fp * (fn + fn_neg)) / denom) if denom else 0.0


def _correlation(fn, preds: list[Any], refs: list[Any]) -> float:
    p = np.array([np.nan if x is None else float(x) for x in preds])
    r = np.array(refs, dtype=float)
    p = np.where(np.isnan(p), np.nanmean(p) if np.isfinite(p).any() else 0.0, p)
    if np.std(p) == 0 or np.std(r) == 0:
        return 0.0
    return 100.0 * float(fn(p, r)[0])


def normalize_answer(s: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, articles or extra spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
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
    """ReCoRD: max EM / token F1 over the gold answers, averaged over examples."""
    em, f1 = [], []
    for pred, ex in zip(preds, examples):
        golds = ex["label"] or [""]
        pred = pred or ""
        em.append(max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds))
        f1.append(max(_token_f1(pred, g) for g in golds))
    return {"em": 100.0 * float(np.mean(em)), "squad_f1": 100.0 * float(np.mean(f1))}


def multirc(preds: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
    """MultiRC: F1 over all answers (f1_a) and exact match per question (em)."""
    refs = _labels(examples)
    groups: dict[Any, list[bool]] = defaultdict(list)
    for p, ex in zip(preds, examples):
        groups[ex["group"]].append(p is not None and p == ex["label"])
    return {"f1_a": f1_binary(preds, refs), "em": 100.0 * float(np.mean([all(v) for v in groups.values()]))}


def compute(task, preds: list[Any], examples: list[dict[str, Any]]) -> dict[str, float]:
    """Every metric of ``task`` (its ``metrics`` order; the first selects checkpoints)."""
    if len(preds) != len(examples):
        raise ValueError(f"{len(preds)} predictions for {len(examples)} examples")
    if not examples:
        raise ValueError(f"cannot score {task.name} on an empty split")
    refs = _labels(examples)
    if task.kind == "extractive":
        table = squad(preds, examples)
    elif "f1_a" in task.metrics:
        table = multirc(preds, examples)
    else:
        table = {}
    out = {}
    for name in task.metrics:
        if name in table:
            out[name] = table[name]
        elif name == "accuracy":
            out[name] = accuracy(preds, refs)
        elif name == "f1":
            out[name] = f1_binary(preds, refs)
        elif name == "macro_f1":
            out[name] = macro_f1(preds, refs, task.num_labels)
        elif name == "matthews_correlation":
            out[name] = matthews(preds, refs)
        elif name == "pearson":
            out[name] = _correlation(stats.pearsonr, preds, refs)
        elif name == "spearmanr":
            out[name] = _correlation(stats.spearmanr, preds, refs)
        else:
            raise ValueError(f"unknown metric {name!r} of task {task.name}; valid metrics: {', '.join(METRICS)}")
    return out
