"""Task metrics (methods.md §7.3) on small hand-computed examples, invalid (None) predictions included."""

from __future__ import annotations

import math

import pytest

from suite.tasks import get_task
from suite.tasks import metrics as M


def rows(labels, groups=None):
    return [{"label": lab, **({"group": g} if groups else {})} for lab, g in zip(labels, groups or labels)]


def test_accuracy_counts_invalid_as_wrong():
    assert M.accuracy([1, 0, None, 1], [1, 1, 0, 1]) == pytest.approx(50.0)


def test_f1_flips_an_invalid_prediction_to_the_opposite_of_its_target():
    # flipped: p = [1, 0, 0, 1, 1] vs r = [1, 1, 1, 0, 0]: tp 1, fp 2, fn 2 -> F1 = 2 / 6
    assert M.f1_binary([1, 0, None, 1, None], [1, 1, 1, 0, 0]) == pytest.approx(100 / 3)
    assert M.f1_binary([None], [1]) == 0.0  # an invalid output on a positive is a miss
    assert M.f1_binary([0, 0], [0, 0]) == 0.0  # no positives at all: 0, as sklearn's default
    assert M.f1_binary([1, 1, 0], [1, 1, 0]) == pytest.approx(100.0)


def test_macro_f1_over_classes_with_zero_division_one():
    # class 0: tp 1 fp 1 fn 1 -> 1/2; class 1: tp 1 fn 1 (the None) -> 2/3; class 2: tp 0 -> 0
    assert M.macro_f1([0, 1, None, 2, 0], [0, 1, 1, 0, 2], 3) == pytest.approx(100 * (0.5 + 2 / 3) / 3)
    # class 2 is never predicted nor true: its F1 is 1 (zero_division=1)
    assert M.macro_f1([0, 1], [0, 1], 3) == pytest.approx(100.0)


def test_matthews_binary_and_with_an_invalid_class():
    refs = [1, 0, 0, 0, 1, 1]
    # tp 2, fp 1, tn 2, fn 1 -> (4 - 1) / sqrt(3^4) = 1/3
    assert M.matthews([1, 1, 0, 0, 1, 0], refs) == pytest.approx(100 / 3)
    # None is its own class: c=4, s=6, p=(1:2, 0:3, None:1), t=(1:3, 0:3) -> 9 / sqrt(22 * 18)
    assert M.matthews([1, None, 0, 0, 1, 0], refs) == pytest.approx(100 * 9 / math.sqrt(22 * 18))
    assert M.matthews([1, 1, 1, 1, 1, 1], refs) == 0.0  # constant prediction: undefined -> 0
    assert M.matthews([None] * 6, refs) == 0.0


def test_correlations_score_an_invalid_output_as_minus_one():
    # p = [1, 2, -1, 4] vs r = [1, 2, 3, 4]: cov 3, var 13 and 5 -> 3 / sqrt(65)
    assert M._correlation("pearson", [1.0, 2.0, None, 4.0], [1, 2, 3, 4]) == pytest.approx(100 * 3 / math.sqrt(65))
    # ranks [2, 3, 1, 4] vs [1, 2, 3, 4]: sum d^2 = 6 -> 1 - 36 / 60
    assert M._correlation("spearmanr", [1.0, 2.0, None, 4.0], [1, 2, 3, 4]) == pytest.approx(40.0)
    assert M._correlation("pearson", [2.0, 2.0, 2.0], [1, 2, 3]) == 0.0  # constant: 0, as S3Delta


def test_squad_em_and_token_f1_take_the_best_gold_answer():
    examples = rows([["The Cat", "dog"], ["New York City"], ["Paris"]])
    out = M.squad(["cat", "new york", None], examples)
    # em: 1, 0, 0; f1: 1, (P=1, R=2/3 -> 0.8), 0
    assert out == {"em": pytest.approx(100 / 3), "squad_f1": pytest.approx(60.0)}
    assert M.normalize_answer("  The  U.S.-led  an Army! ") == "usled army"


def test_multirc_f1_over_answers_and_exact_match_per_question():
    examples = rows([1, 0, 1], groups=["a", "a", "b"])
    out = M.multirc([1, None, 1], examples)
    # None flipped to 1: p = [1, 1, 1], r = [1, 0, 1] -> tp 2, fp 1 -> 0.8; em: a wrong, b right
    assert out == {"f1_a": pytest.approx(80.0), "em": pytest.approx(50.0)}


def test_compute_follows_the_task_metric_order_and_checks_lengths():
    mrpc = get_task("glue/mrpc")
    out = mrpc.score([1, 0, None, 1], rows([1, 0, 1, 0]))
    assert list(out) == ["f1", "accuracy"] and mrpc.selection_metric == "f1"
    assert out["accuracy"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * 2 / (2 + 1 + 1))  # p = [1, 0, 0, 1]: tp 1, fp 1, fn 1
    assert list(get_task("superglue/record").score(["x"], rows([["x"]]))) == ["em", "squad_f1"]
    assert list(get_task("superglue/multirc").score([1], rows([1], ["g"]))) == ["f1_a", "em"]
    assert list(get_task("glue/stsb").score([1.0, 2.0], rows([1.0, 2.0]))) == ["pearson", "spearmanr"]
    assert list(get_task("superglue/cb").score([0], rows([0]))) == ["macro_f1", "accuracy"]
    with pytest.raises(ValueError, match="3 predictions for 2 examples"):
        mrpc.score([1, 0, 1], rows([1, 0]))
    with pytest.raises(ValueError, match="empty split"):
        mrpc.score([], [])


def test_metrics_agree_with_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    refs = [1, 0, 0, 1, 1, 0, 1, 0]
    preds = [1, None, 0, 0, 1, 1, None, 0]
    flipped = [1 - r if p is None else p for p, r in zip(preds, refs)]
    assert M.f1_binary(preds, refs) == pytest.approx(100 * sk.f1_score(refs, flipped))
    as_class = [-1 if p is None else p for p in preds]
    assert M.matthews(preds, refs) == pytest.approx(100 * sk.matthews_corrcoef(refs, as_class))
    refs3, preds3 = [0, 1, 2, 2, 1, 0], [0, 2, 2, None, 1, 1]
    expected = sk.fbeta_score(refs3, [-1 if p is None else p for p in preds3], beta=1, labels=range(3),
                              average="macro", zero_division=1)
    assert M.macro_f1(preds3, refs3, 3) == pytest.approx(100 * expected)
