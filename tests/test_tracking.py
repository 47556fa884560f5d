"""``run --log tensorboard|mlflow|wandb`` (suite.tracking): Ray Tune's logger callbacks per trial, and
each record's final metrics, once, per record.

MLflow runs against a local file store in the test's folder (``MLFLOW_ALLOW_FILE_STORE``: MLflow 3
keeps the file store in maintenance mode), TensorBoard's event files are read back with
tensorboardX's own protobufs, W&B runs offline where it is installed (skipped otherwise).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from helpers import refused_before_ray

from suite.cli import main
from suite.plan import Plan, UsageError
from suite.rundir import load_records
from suite.tracking import RecordLog, parse_log

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "48",
        "--max-eval-samples", "24", "--epochs", "1"]
FAILED = "bipeft--s2--glue_stsb--seed2--b12629"


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """An MLflow client on a file store of its own; ``runs(kind)`` lists the runs tagged ``suite.kind``."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "suite-test")
    client = mlflow.MlflowClient()

    def runs(kind: str):
        experiment = client.get_experiment_by_name("suite-test")
        return client.search_runs([experiment.experiment_id], f"tags.`suite.kind` = '{kind}'") if experiment else []

    client.runs = runs
    return client


@pytest.fixture
def fixture_run(tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(FIXTURES / "records", out / "records")
    return out


def tensorboard_scalars(folder: Path) -> tuple[dict[str, float], set[str]]:
    """The scalars and the HParams session's parameter names in ``folder``'s event files (TFRecords)."""
    from tensorboardX.proto import event_pb2, plugin_hparams_pb2

    scalars, hparams = {}, set()
    for path in folder.glob("events.out.tfevents.*"):
        data, i = path.read_bytes(), 0
        while i < len(data):  # length (8 bytes), its CRC (4), the event, its CRC (4)
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event, i = event_pb2.Event.FromString(data[i + 12:i + 12 + n]), i + 16 + n
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars[value.tag] = value.simple_value
                elif value.metadata.plugin_data.plugin_name == "hparams":
                    info = plugin_hparams_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    hparams |= set(info.session_start_info.hparams)
    return scalars, hparams


def test_log_names_are_checked_and_kept_in_order():
    assert parse_log(["mlflow,tensorboard", "mlflow", " wandb "]) == ("mlflow", "tensorboard", "wandb")
    assert parse_log(None) == ()
    with pytest.raises(UsageError, match="unknown --log 'neptune'; valid: tensorboard, mlflow, wandb"):
        parse_log(["mlflow,neptune"])
    with pytest.raises(UsageError, match="--log is empty"):
        parse_log([","])


def _without(module: str, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))


def test_a_missing_tracking_package_names_its_extra_before_ray_starts(tmp_path, capsys, monkeypatch):
    _without("mlflow", monkeypatch)
    out = tmp_path / "run"
    with refused_before_ray(tmp_path):
        assert main(["run", "--methods", "lora", *TINY, "--log", "tensorboard,mlflow", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --log mlflow needs the mlflow package, which is not installed: "
                   "pip install 'autopeft-suite[mlflow]'")
    # a resumed run logs where it did, and is checked the same way
    out.mkdir()
    Plan(methods=("lora",), space="s2", tasks=("demo/rotten_tomatoes",), backbone="tiny-bert", seeds=(0,),
         log=("mlflow",)).save(out)
    assert Plan.load(out).log == ("mlflow",)
    with refused_before_ray(tmp_path):
        assert main(["run", "--resume", "--out", str(out)]) == 2
    assert "pip install 'autopeft-suite[mlflow]'" in capsys.readouterr().err


@pytest.mark.parametrize("uri, message", [
    ("file-store", "MLflow 3 refuses the file store file:"),
    ("http://127.0.0.1:9", "the tracking store http://127.0.0.1:9 does not answer"),
])
def test_an_mlflow_store_that_does_not_answer_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch, uri,
                                                                           message):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri() if uri == "file-store" else uri)
    with refused_before_ray(tmp_path):
        assert main(["run", "--methods", "lora", *TINY, "--log", "mlflow", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the check's own settings are put back


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_log_wandb_without_wandb_names_its_extra(tmp_path, capsys):
    with refused_before_ray(tmp_path):
        assert main(["run", "--methods", "lora", *TINY, "--log", "wandb", "--out", str(tmp_path / "run")]) == 2
    assert "pip install 'autopeft-suite[wandb]'" in capsys.readouterr().err


def test_each_record_is_logged_once_with_its_final_metrics(fixture_run, mlflow_store):
    records = {r["run_id"]: r for r in load_records(fixture_run)}
    log = RecordLog(("mlflow", "tensorboard"), fixture_run)
    assert log.update() == 2 * len(records)
    runs = {run.info.run_name: run for run in mlflow_store.runs("record")}
    assert set(runs) == set(records)
    for run_id, run in runs.items():
        record = records[run_id]
        assert run.data.params["method"] == record["method"] and run.data.params["seed"] == str(record["seed"])
        assert run.data.tags["suite.run_id"] == run_id
        assert run.info.status == ("FINISHED" if record["status"] == "ok" else "FAILED")
        for metric, value in record["metrics"]["test"].items():
            assert run.data.metrics[f"test_{metric}"] == pytest.approx(value)
        scalars, hparams = tensorboard_scalars(fixture_run / "tensorboard" / run_id)
        assert {"method", "task", "seed", "harness.lr"} <= hparams
        assert {k: pytest.approx(scalars[f"test_{k}"]) for k in record["metrics"]["test"]} == \
            record["metrics"]["test"]
    assert "error" in runs[FAILED].data.params and "test_score" not in runs[FAILED].data.metrics

    assert log.update() == 0  # nothing new
    assert RecordLog(("mlflow", "tensorboard"), fixture_run).update() == 0  # nor after --resume: tracking.json
    rewritten = fixture_run / "records" / f"{FAILED}.json"
    os.utime(rewritten, ns=(rewritten.stat().st_atime_ns, rewritten.stat().st_mtime_ns + 10**9))
    assert log.update() == 2  # a record written again (a failed job retried) is logged again
    assert len(mlflow_store.runs("record")) == len(records) + 1


def test_every_text_column_of_the_leaderboard_is_a_parameter(fixture_run):
    from suite.report.aggregate import leaderboard
    from suite.tracking import record_fields

    for record in load_records(fixture_run, status="ok"):
        params, metrics = record_fields(record)
        row = leaderboard([record]).iloc[0]
        text = {k for k, v in row.items() if isinstance(v, str)}
        assert text <= set(params), text - set(params)  # e.g. the precision it trained at
        assert params["precision"] == row["precision"] and not set(params) & set(metrics)


def test_a_failing_tracker_costs_its_logs_not_the_run(fixture_run, mlflow_store, monkeypatch, capsys):
    from suite import tracking

    def down(self, record, params, metrics):
        raise ConnectionError("tracking server unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(tracking._MLflow, "log", down)
        log = RecordLog(("mlflow", "tensorboard"), fixture_run)
        assert log.update() == len(load_records(fixture_run))  # TensorBoard's
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--log mlflow: could not log record" in err[0] and "unreachable" in err[0]
    ledger = json.loads((fixture_run / "tracking.json").read_text())
    assert "mlflow" not in ledger  # logged by a later update, e.g. on --resume
    assert RecordLog(("mlflow", "tensorboard"), fixture_run).update() == len(load_records(fixture_run))
    assert len(mlflow_store.runs("record")) == len(load_records(fixture_run))


@pytest.mark.ray
@pytest.mark.slow
def test_run_logs_each_trial_live_and_each_record_at_its_end(tmp_path, ray_session, mlflow_store, capsys):
    out = tmp_path / "run"
    assert main(["run", "--methods", "lora", *TINY, "--log", "mlflow", "--log", "tensorboard", "--out", str(out)]) == 0
    assert "logging to MLflow " in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["log"] == ["mlflow", "tensorboard"]
    (record,) = load_records(out)
    (trial,) = mlflow_store.runs("trial")  # Ray Tune's MLflowLoggerCallback: the retrain trial
    # the one experiment names each retrain trial after its record (suite.schedule)
    assert trial.info.run_name == f"retrain-{record['run_id']}" and trial.data.params["trial/job/method"] == "lora"
    curve = mlflow_store.get_metric_history(trial.info.run_id, "val_accuracy")
    assert curve and curve[-1].value == pytest.approx(record["metrics"]["validation"]["accuracy"])
    (summary,) = mlflow_store.runs("record")
    assert summary.data.metrics["test_accuracy"] == pytest.approx(record["metrics"]["test"]["accuracy"])
    (trial_events,) = (out / "ray").rglob(f"retrain-{record['run_id']}-*/events.out.tfevents.*")  # TBXLoggerCallback
    assert "ray/tune/val_accuracy" in tensorboard_scalars(trial_events.parent)[0]
    scalars, _ = tensorboard_scalars(out / "tensorboard" / record["run_id"])
    assert scalars["test_accuracy"] == pytest.approx(record["metrics"]["test"]["accuracy"])


@pytest.mark.ray
@pytest.mark.slow
def test_run_logs_to_wandb_offline(tmp_path, ray_session, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "run"
    assert main(["run", "--methods", "lora", *TINY, "--log", "wandb", "--out", str(out)]) == 0
    (record,) = load_records(out)
    assert record["run_id"] in json.loads((out / "tracking.json").read_text())["wandb"]
    assert list(tmp_path.rglob("offline-run-*")), "no offline W&B run was written"
