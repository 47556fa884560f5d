"""What crosses the Ray boundary is typed: a trial's report reads back as the object it packed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from suite.outcomes import RetrainResult, SearchOutcome, packed, unpacked


def test_a_search_outcome_crosses_as_it_was():
    outcome = SearchOutcome({"space": "s2", "placements": []}, 1.25, {"steps": 3, "trace_dir": "traces/x"})
    assert unpacked(SearchOutcome, packed(outcome)) == outcome


def test_a_retrain_result_crosses_without_its_tensors_and_with_the_trial_facts():
    result = RetrainResult(validation={"accuracy": 50.0}, test={"accuracy": 37.5}, best_step=2, steps=4,
                           train_time_s=1.0, eval_time_s=0.5, peak_memory_mb=600.0, peft_params=10, head_params=66,
                           backbone_params=1000, history=[{"step": 2, "accuracy": 50.0}], pooling="cls",
                           op_options={"lora": {"scaling": 2.0}}, weights={"w": object()}, predictions=[{"i": 0}])
    result = dataclasses.replace(result, backbone_revision="abc", placement={"hostname": "vm"})
    text = packed(result)
    assert "weights" not in json.loads(text) and json.loads(text)["ratio"] == 0.01
    back = unpacked(RetrainResult, text)
    assert back == dataclasses.replace(result, weights=None, predictions=None)
    assert back.ratio == result.ratio and back.attempts == 1
    with pytest.raises(TypeError, match="unexpected keyword argument 'peft'"):
        RetrainResult.from_dict({**result.to_dict(), "peft": 1})


class Uncopyable:
    """A weight that fails when copied."""

    def __deepcopy__(self, memo):
        raise AssertionError("the weights were copied")


def test_a_retrain_result_packs_without_copying_its_weights():
    """``to_dict`` leaves the weights out before anything copies them (a full fine-tuning's weights
    are the backbone's size: a deep copy of them cost seconds to minutes and as much memory again)."""
    result = RetrainResult(validation={"accuracy": 50.0}, test={}, best_step=1, steps=1, train_time_s=1.0,
                           eval_time_s=0.5, peak_memory_mb=1.0, peft_params=1, head_params=1, backbone_params=2,
                           weights={"w": Uncopyable()}, predictions=[{"p": Uncopyable()}])
    assert json.loads(packed(result))["steps"] == 1 and result.to_dict()["ratio"] == 0.5
