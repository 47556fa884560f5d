"""The record schema: what an ok and a failed record must hold, and the checks beyond JSON Schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from suite.records import validate_dir, validate_record, write_record
from suite.rundir import load_records

RECORDS = Path(__file__).resolve().parent / "fixtures" / "records"
OK = json.loads((RECORDS / "lora--manual--glue_mrpc--seed0--bnone.json").read_text())
FAILED = json.loads((RECORDS / "bipeft--s2--glue_stsb--seed2--b12629.json").read_text())


def broken(record: dict, change) -> dict:
    record = copy.deepcopy(record)
    change(record)
    return record


def test_fixture_records_are_valid():
    validate_record(OK)
    validate_record(FAILED)


@pytest.mark.parametrize("record, message", [
    (broken(OK, lambda r: r.update(status="done")), "status: 'done' is not one of"),
    (broken(OK, lambda r: r.update(error="boom")), "error: 'boom' is not of type 'null'"),
    (broken(OK, lambda r: r["metrics"].update(test={})), "metrics/test: {} should be non-empty"),
    (broken(OK, lambda r: r["params"].update(peft=None)), "params/peft: None is not of type 'integer'"),
    (broken(OK, lambda r: r["time"].pop("retrain_s")), "time: 'retrain_s' is a required property"),
    (broken(OK, lambda r: r.pop("backbone_params")), "'backbone_params' is a required property"),
    (broken(OK, lambda r: r["budget"].update(fraction=1.39)), "budget/fraction: 1.39 is greater than"),
    (broken(OK, lambda r: r.update(seed=1)), "run_id: expected 'lora--manual--glue_mrpc--seed1--bnone'"),
    (broken(OK, lambda r: r["metrics"]["validation"].pop("f1")), "metrics/validation: lacks the selection metric 'f1'"),
    (broken(OK, lambda r: r["params"].update(ratio=0.5)), "params/ratio: 0.5 !="),
    (broken(OK, lambda r: r["params"].update(permyriad=3.2)), "params/permyriad: 3.2 !="),
    (broken(FAILED, lambda r: r.update(error=None)), "error: None is not of type 'string'"),
    (broken(FAILED, lambda r: r.pop("error")), "'error' is a required property"),
    (broken(OK, lambda r: r.update(extra=1)), "Additional properties are not allowed ('extra'"),
    (broken(OK, lambda r: r["metrics"]["test"].update(f1=float("nan"))), "metrics/test/f1: nan is not a finite number"),
    (broken(OK, lambda r: r["metrics"]["validation"].update(accuracy=float("inf"))),
     "metrics/validation/accuracy: inf is not a finite number"),
    (broken(OK, lambda r: r["time"].update(retrain_s=float("nan"))), "time/retrain_s: nan is not a finite number"),
])
def test_invalid_records_name_the_problem(record, message):
    with pytest.raises(ValueError, match="record ") as info:
        validate_record(record)
    assert message in str(info.value)


def test_a_record_is_an_object():
    with pytest.raises(ValueError, match="a record is a JSON object, got list"):
        validate_record([OK])


def test_write_load_and_validate_dir(tmp_path):
    write_record(tmp_path, OK)
    write_record(tmp_path, FAILED)
    assert [r["run_id"] for r in load_records(tmp_path, status="ok")] == [OK["run_id"]]
    assert validate_dir(tmp_path) == []
    (tmp_path / "records" / "renamed.json").write_text(json.dumps(OK))
    assert validate_dir(tmp_path) == [f"renamed.json: run_id {OK['run_id']!r} does not match the file name"]
    with pytest.raises(ValueError, match="status"):
        write_record(tmp_path, broken(OK, lambda r: r.update(status="done")))


def test_no_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run"):
        validate_dir(tmp_path)
    (tmp_path / "records").mkdir()
    with pytest.raises(FileNotFoundError, match="has no records"):
        validate_dir(tmp_path)


def test_a_record_with_nan_or_infinity_fails_validate_and_table_names_it(tmp_path, capsys):
    from suite.cli import main

    write_record(tmp_path, FAILED)
    path = tmp_path / "records" / f"{OK['run_id']}.json"
    path.write_text(json.dumps(broken(OK, lambda r: r["metrics"]["test"].update(f1=float("inf")))))
    assert '"f1": Infinity' in path.read_text()  # what json writes, and validate read as a number
    assert main(["validate", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == f"{path.name}: record {OK['run_id']}: metrics/test/f1: inf is not a finite number"
    assert main(["table", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "metrics/test/f1: inf is not a finite number" in err and err.count("\n") == 1
    assert not (tmp_path / "accuracy.md").exists()


def test_a_record_keeps_the_learning_rate_its_retrain_trained_at():
    from suite.outcomes import RetrainResult, SearchOutcome
    from suite.plan import Job
    from suite.records import build_record

    job = Job("lora", "manual", "glue/mrpc", 0, None, None, "manual")
    retrain = RetrainResult(validation={"accuracy": 80.0, "f1": 85.0}, test={"accuracy": 79.0, "f1": 84.0}, best_step=2,
                            steps=4, train_time_s=1.0, eval_time_s=0.1, peak_memory_mb=1.0, peft_params=10, head_params=2,
                            backbone_params=1000)
    record = build_record(job, "ok", backbone="tiny-bert", backbone_params=1000, harness={"lr": 1e-3}, method_config={},
                          environment=OK["environment"], retrain=retrain, lr=2e-5,
                          search=SearchOutcome(OK["architecture"], 0.0, {}))
    validate_record(record)
    assert record["retrain"]["lr"] == 2e-5 and record["harness"]["lr"] == 1e-3  # the retrain's, and the run's
