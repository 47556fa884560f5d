"""Structure transfer (the paper's Table 4): ``run --architecture RUN_DIR:RUN_ID --tasks ...`` retrains a
found architecture on other tasks with the shared harness, no search, kept apart in the tables."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from spaces.architecture import Architecture, Placement, Site
from suite.cli import main
from suite.records import validate_dir
from suite.rundir import load_records

TINY = ["--backbone", "tiny-bert", "--max-train-samples", "48", "--max-eval-samples", "24", "--epochs", "1"]


def test_an_architecture_of_a_deeper_backbone_is_a_clear_error(tmp_path, capsys):
    deep = Architecture("s2", "bigger", (Placement(Site("enc", 5, "attn.q"), "lora", 4),))
    deep.save(tmp_path / "deep.json")
    assert main(["run", "--architecture", str(tmp_path / "deep.json"), *TINY, "--tasks", "demo/rotten_tomatoes",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "does not fit this backbone (2 layers): it has no site enc.5.attn.q" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
    assert main(["run", "--architecture", str(tmp_path / "deep.json"), "--methods", "lora", *TINY,
                 "--out", str(tmp_path / "run")]) == 2
    assert "drop --methods" in capsys.readouterr().err
    assert main(["run", "--architecture", str(tmp_path / "none.json"), *TINY, "--out", str(tmp_path / "run")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("change, field", [
    (lambda a: a.update(placements={"site": "enc.0.attn.q", "op": "lora", "size": 4}),
     "placements must be a list of placements"),
    (lambda a: a["placements"][0].update(size="4"), "placement 0: 'size' must be an integer or null"),
    (lambda a: a["placements"][0].update(site=0), "placement 0: 'site' must be a string"),
    (lambda a: a["placements"][0].update(op=None), "placement 0: 'op' must be a string"),
])
def test_an_architecture_with_a_field_of_the_wrong_type_is_one_line_naming_the_file(tmp_path, capsys, change, field):
    from helpers import refused_before_ray

    arch = Architecture("s2", "tiny-bert", (Placement(Site("enc", 0, "attn.q"), "lora", 4),)).to_dict()
    change(arch)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    record = json.loads((ROOT / "tests" / "fixtures" / "records" / "lora--manual--glue_mrpc--seed0--bnone.json")
                        .read_text())
    record["architecture"] = arch
    source = tmp_path / "source"
    (source / "records").mkdir(parents=True)
    (source / "records" / f"{record['run_id']}.json").write_text(json.dumps(record))
    for spec, where in [(str(path), f"--architecture {path}: "),
                        (f"{source}:{record['run_id']}", f"{source / 'records' / record['run_id']}.json: architecture: ")]:
        with refused_before_ray(tmp_path):
            assert main(["run", "--architecture", spec, *TINY, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert f"{where}{field}" in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_truncated_architecture_or_record_names_its_file(tmp_path, capsys):
    from helpers import refused_before_ray

    path = tmp_path / "arch.json"
    path.write_text('{"space": "s2", "placements": [')
    (tmp_path / "source" / "records").mkdir(parents=True)
    record = tmp_path / "source" / "records" / "lora--manual--demo_rotten_tomatoes--seed0--bnone.json"
    record.write_text('{"run_id": "lora--manual--demo_rotten_tomatoes--seed0--bnone", "archit')
    for spec, named in [(str(path), f"{path} is not an architecture: invalid JSON"),
                        (f"{tmp_path / 'source'}:{record.stem}", f"{record} is not a record: invalid JSON")]:
        with refused_before_ray(tmp_path):
            assert main(["run", "--architecture", spec, *TINY, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert named in err and err.count("\n") == 1, err


@pytest.mark.ray
@pytest.mark.slow
def test_a_found_structure_retrains_on_other_tasks_labelled_by_its_source(tmp_path, ray_session):
    source = tmp_path / "source"
    assert main(["run", "--methods", "lora", *TINY, "--tasks", "demo/rotten_tomatoes", "--out", str(source)]) == 0
    (record,) = load_records(source)
    out = tmp_path / "transfer"
    fixtures = str(ROOT / "tests" / "fixtures")
    assert main(["run", "--architecture", f"{source}:{record['run_id']}", *TINY, "--tasks", "glue/cola,glue/mrpc",
                 "--data-dir", fixtures, "--seeds", "0,1", "--out", str(out)]) == 0
    records = load_records(out)
    assert len(records) == 4 and validate_dir(out) == []
    for r in records:
        assert r["status"] == "ok" and r["method"] == "lora" and r["method_kind"] == "transfer"
        assert r["space"] == "from_demo_rotten_tomatoes" and r["task"] in ("glue/cola", "glue/mrpc")
        assert r["architecture"] == record["architecture"]
        assert r["search"]["transfer"]["digest"] == record["architecture_digest"] == r["architecture_digest"]
        assert r["search"]["transfer"]["run_id"] == record["run_id"] and r["time"]["search_s"] == 0
    accuracy = (out / "accuracy.md").read_text()
    assert "**Transferred structures**" in accuracy and "LoRA(r=8) (from demo/rotten_tomatoes)" in accuracy
    assert json.loads((out / "run.json").read_text())["transfer"]["source"]["task"] == "demo/rotten_tomatoes"
