"""The found model as an artifact: weights beside the record, ``suite export`` (suite and peft formats),
loading with ``spaces.pretrained.load_pretrained`` and with plain peft, refusals and corrupted files.

Each case retrains a real architecture on tiny BERT and tiny T5 (a few steps on the demo task) and
files it the way the driver does (record, weights, predictions); the exported model must give the
suite's own model's logits (within 1e-5) and reproduce the record's test metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spaces.architecture import Architecture, Placement, Site
from spaces.inject import inject_fixed
from spaces.pretrained import ArtifactError, load_pretrained
from suite.backbones import load_backbone
from suite.export import ExportError, export
from suite.harness import Experiment, HarnessConfig
from suite.outcomes import SearchOutcome
from suite.plan import Job
from suite.recipe import SUITE_OP_OPTIONS
from suite.records import build_record, environment, write_record
from suite.rundir import RunDir
from suite.tasks import get_task, load_splits
from suite.trials import write_artifacts

TASK = "demo/rotten_tomatoes"
HARNESS = {"max_train_samples": 32, "max_eval_samples": 16, "max_steps": 6, "eval_every": 3, "scoring": "label_tokens"}


def architecture(backbone: str, kind: str, sites) -> Architecture:
    layer = 1  # the last layer of the tiny models
    stack = "enc"
    placements = [Placement(Site(stack, 0, "attn.q"), "lora", 4), Placement(Site(stack, layer, "attn.v"), "lora", 8)]
    if kind == "lora_lnfit_bitfit":
        placements += [Placement(Site(stack, layer, "ln.ffn"), "lnfit"), Placement(Site(stack, layer, "ln.ffn"), "bitfit"),
                       Placement(Site(stack, layer, "attn.o"), "bitfit")]
    elif kind == "ia3":  # an output scale (k), an input scale (ffn.down) and a norm beside them
        placements = [Placement(Site(stack, 0, "attn.k"), "ia3"), Placement(Site(stack, layer, "ffn.down"), "ia3"),
                      Placement(Site(stack, layer, "ln.ffn"), "lnfit")]
    elif kind == "dora":
        placements = [Placement(Site(stack, 0, "attn.q"), "dora", 4), Placement(Site(stack, layer, "attn.v"), "dora", 8),
                      Placement(Site(stack, layer, "ln.ffn"), "lnfit")]
    elif kind == "mixed_s1":
        placements = [Placement(Site(stack, layer, "ffn"), "adapter_serial", 4),
                      Placement(Site(stack, 0, "ffn"), "adapter_parallel", 8), Placement(Site(stack, layer, "attn"), "prefix", 4)]
    for p in placements:
        sites.spec(p.site)  # the site exists on this backbone
    return Architecture("s2", backbone, tuple(placements))


def retrained_run(tmp_path: Path, backbone: str, kind: str):
    """A run folder with one ok record of ``kind`` on ``backbone``, filed as the driver files it."""
    task = get_task(TASK)
    exp = Experiment(task, load_splits(task, 0), backbone, 0, HarnessConfig(**HARNESS))
    arch = architecture(backbone, kind, exp.sites)
    result = exp.retrain(arch, op_options=SUITE_OP_OPTIONS)
    out = tmp_path / "run"
    folder = tmp_path / "artifacts"
    folder.mkdir()
    spec = {"architecture": arch.to_dict(), "backbone": backbone, "run_id": "x", "save_weights": True}
    write_artifacts(folder, result, spec, None)
    job = Job("lora", "manual", TASK, 0, None, None, "manual")
    files = RunDir(out).file_checkpoint(job.run_id, folder)
    assert set(files) == {"weights", "predictions"}
    record = build_record(job, "ok", backbone=backbone, backbone_params=exp.sites.backbone_params, harness=HARNESS,
                          method_config={}, environment=environment(), search=SearchOutcome(arch.to_dict(), 0.0),
                          retrain=result, files=files)
    write_record(out, record)
    return out, record, exp, result


def suite_model(exp, arch: Architecture, weights: dict):
    """The suite's own trained model: the harness's task model with the best checkpoint's weights."""
    task_model = exp.new_model()
    inject_fixed(task_model.model, arch, op_options=SUITE_OP_OPTIONS)
    params = dict(task_model.model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return task_model.model.eval()


def batch(exp):
    inputs = exp.collator([(i, ex) for i, ex in enumerate(exp.splits.test[:4])])
    return {k: v for k, v in inputs.items() if k not in ("index", "labels")}


def logits(model, exp, inputs):
    if exp.family == "t5":
        start = torch.zeros((inputs["input_ids"].shape[0], 1), dtype=torch.long)
        return model(**inputs, decoder_input_ids=start).logits
    return model(**inputs).logits


def fresh_backbone(backbone: str):
    torch.manual_seed(0)  # the tiny models are random: the same seed as the retrain's
    return load_backbone(backbone, num_labels=2)


CASES = [(b, k) for b in ("tiny-bert", "tiny-t5") for k in ("lora", "lora_lnfit_bitfit", "mixed_s1")]


@pytest.mark.parametrize("backbone, kind", CASES)
def test_suite_format_loads_to_the_same_logits_and_score(tmp_path, backbone, kind):
    out, record, exp, result = retrained_run(tmp_path, backbone, kind)
    folder = export(out, record["run_id"], tmp_path / "exported", "suite")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "weights.safetensors"]
    loaded = load_pretrained(fresh_backbone(backbone), folder)
    arch = Architecture.from_dict(record["architecture"])
    inputs = batch(exp)
    with torch.no_grad():
        torch.testing.assert_close(logits(loaded, exp, inputs), logits(suite_model(exp, arch, result.weights), exp, inputs),
                                   rtol=0, atol=1e-5)
    task_model = exp.new_model()
    task_model.model = loaded  # the exported model in the suite's task wrapper: its test predictions
    assert exp.evaluate(task_model, exp.splits.test) == record["metrics"]["test"]


@pytest.mark.parametrize("backbone, kind", [("tiny-bert", "lora"), ("tiny-bert", "lora_lnfit_bitfit"), ("tiny-t5", "lora"),
                                           *((b, k) for b in ("tiny-bert", "tiny-t5") for k in ("ia3", "dora"))])
def test_peft_format_loads_with_plain_peft_to_the_same_logits(tmp_path, backbone, kind):
    from peft import PeftModel

    out, record, exp, result = retrained_run(tmp_path, backbone, kind)
    folder = export(out, record["run_id"], tmp_path / "peft", "peft")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} == {p.name for p in folder.iterdir()}
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == backbone
    model = PeftModel.from_pretrained(fresh_backbone(backbone), str(folder)).eval()
    inputs = batch(exp)
    arch = Architecture.from_dict(record["architecture"])
    with torch.no_grad():
        torch.testing.assert_close(logits(model, exp, inputs), logits(suite_model(exp, arch, result.weights), exp, inputs),
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("backbone, kind, named", [("tiny-t5", "mixed_s1", "adapter_serial at enc.1.ffn"),
                                                   ("tiny-t5", "lora_lnfit_bitfit", "no bias there"),
                                                   ("tiny-bert", "mixed_s1", "prefix at enc.1.attn")])
def test_peft_refuses_what_it_cannot_express_and_writes_nothing(tmp_path, backbone, kind, named):
    out, record, _, _ = retrained_run(tmp_path, backbone, kind)
    with pytest.raises(ExportError, match="peft cannot express .*use --format suite") as err:
        export(out, record["run_id"], tmp_path / "peft", "peft")
    assert named in str(err.value)
    assert not (tmp_path / "peft").exists() and not list(tmp_path.glob(".peft.*"))


def test_corrupted_or_missing_weights_are_clear_errors(tmp_path):
    out, record, _, _ = retrained_run(tmp_path, "tiny-bert", "lora")
    folder = export(out, record["run_id"], tmp_path / "good", "suite")
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])  # truncated
    with pytest.raises(ArtifactError, match="weights.safetensors is corrupted"):
        load_pretrained(fresh_backbone("tiny-bert"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("weights_sha256")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_pretrained(fresh_backbone("tiny-bert"), folder)
    run_weights = out / record["files"]["weights"]["path"]
    run_weights.write_bytes(b"\0" + run_weights.read_bytes()[1:])
    with pytest.raises(ExportError, match="is corrupted: its sha256"):
        export(out, record["run_id"], tmp_path / "again", "suite")
    with pytest.raises(ExportError, match="no record 'nope'.*valid run ids"):
        export(out, "nope", tmp_path / "again", "suite")
    with pytest.raises(ExportError, match="exists and is not an empty folder"):
        export(out, record["run_id"], folder, "suite")


def test_cli_export_is_one_line_on_bad_input(tmp_path, capsys):
    from suite.cli import main

    out, record, _, _ = retrained_run(tmp_path, "tiny-bert", "lora")
    assert main(["export", "--out", str(out), "--run-id", record["run_id"], "--to", str(tmp_path / "e")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "e")
    assert main(["export", "--out", str(out), "--run-id", "missing", "--to", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no record 'missing'") and err.count("\n") == 1 and not (tmp_path / "f").exists()


def test_peft_format_without_peft_installed_names_the_extra(tmp_path, monkeypatch):
    import sys

    out, record, _, _ = retrained_run(tmp_path, "tiny-bert", "lora")
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    with pytest.raises(ExportError, match=r"needs the peft package: pip install .*\[peft\]"):
        export(out, record["run_id"], tmp_path / "peft", "peft")
    assert not (tmp_path / "peft").exists() and not list(tmp_path.glob(".peft.*"))


def fixture_run(tmp_path: Path) -> Path:
    """A copy of the report fixtures' records (no weights: enough for what export refuses first)."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "records", out / "records")
    return out


def test_export_refuses_a_records_folder_with_a_file_that_is_no_record_as_table_does(tmp_path, capsys):
    from suite.cli import main

    out = fixture_run(tmp_path)
    run_id = "lora--manual--glue_mrpc--seed0--bnone"
    (out / "records" / "notes.json").write_text(json.dumps({"todo": "rerun mrpc"}))
    for argv in (["export", "--out", str(out), "--run-id", run_id, "--to", str(tmp_path / "e")],
                 ["table", "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "1 invalid record(s) in" in err and "e.g. notes.json: record ?:" in err and err.count("\n") == 1, err
    (out / "records" / "notes.json").unlink()
    (out / "records" / f"{run_id}.json").write_text('{"run_id": "lora--manual')  # cut short
    assert main(["export", "--out", str(out), "--run-id", run_id, "--to", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'records' / run_id}.json is not a record: invalid JSON" in err and err.count("\n") == 1, err
    assert not (tmp_path / "e").exists()


def test_export_to_a_folder_under_a_file_is_one_line(tmp_path, capsys):
    from suite.cli import main

    out, record, _, _ = retrained_run(tmp_path, "tiny-bert", "lora")  # a record export would write
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", "--out", str(out), "--run-id", record["run_id"], "--to", str(blocker / "model")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --to {blocker / 'model'} is under the file {blocker}: choose a new folder\n"
    assert blocker.read_text() == "x"
