"""``--data-dir`` as people have their data: a ``save_to_disk`` folder and the hub's parquet layout,
built from the fixture rows with ``datasets`` itself; the hub loader run on a local parquet
repository; errors for a folder in none of the layouts (``suite.tasks.datadir``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from suite.tasks import MissingDataFile, TaskDataError, get_task, load_splits
from suite.tasks.base import MultiRCTask, RecordTask
from suite.tasks.files import read_original
from suite.tasks.hub import Hub, load_hub, split_names

datasets = pytest.importorskip("datasets")

FIXTURES = Path(__file__).parent / "fixtures"
FILE_TASKS = ["glue/cola", "glue/sst2", "glue/mrpc", "glue/qqp", "glue/stsb", "glue/mnli", "glue/qnli", "glue/rte",
              "superglue/boolq", "superglue/cb", "superglue/multirc", "superglue/record", "superglue/rte",
              "superglue/wic"]


@pytest.fixture(autouse=True)
def _own_datasets_cache(monkeypatch, tmp_path):
    """``load_dataset("parquet", ...)`` caches what it reads: here, not in the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def hub_row(task, ex: dict) -> dict:
    """An example of the release files as the hub's schema holds it (MultiRC and ReCoRD nest ``idx``)."""
    row = {k: v for k, v in ex.items() if k != "group"}
    if isinstance(task, MultiRCTask):
        paragraph, question = ex["group"].split("-")
        row["idx"] = {"paragraph": int(paragraph), "question": int(question), "answer": ex["idx"]}
    elif isinstance(task, RecordTask):
        passage, query = ex["group"].split("-")
        row["idx"] = {"passage": int(passage), "query": int(query)}
        row["answers"] = row.pop("label")
    return row


def hub_dataset(task, examples: list[dict]):
    """A ``datasets.Dataset`` of hub rows with the hub's label feature (ClassLabel; STS-B float32)."""
    data = datasets.Dataset.from_list([hub_row(task, ex) for ex in examples])
    if task.kind == "classification":
        return data.cast_column("label", datasets.ClassLabel(names=list(task.labels)))
    if task.kind == "regression":
        return data.cast_column("label", datasets.Value("float32"))
    return data


def hub_dict(name: str):
    """The task's fixture rows as the hub's ``DatasetDict`` (split names as the hub's: MNLI's
    ``validation_matched``)."""
    task = get_task(name)
    original = read_original(task, FIXTURES)
    return datasets.DatasetDict({hub: hub_dataset(task, original[split]) for split, hub in split_names(task).items()})


def save_to_disk(data_dir: Path, name: str) -> Path:
    """``DIR/<task>`` as AutoPEFT's README makes it: ``load_dataset(...).save_to_disk(...)``."""
    hub_dict(name).save_to_disk(str(data_dir / name))
    return data_dir / name


def parquet_repository(repo: Path, name: str) -> Path:
    """The task written into ``repo`` as the hub's repository holds it: ``<config>/<split>-*.parquet``
    and the README's ``configs`` that ``load_dataset(repo, config)`` reads."""
    config = get_task(name).hub.config
    entries = []
    for split, data in hub_dict(name).items():
        data.to_parquet(str(repo / config / f"{split}-00000-of-00001.parquet"))
        entries.append(f"  - split: {split}\n    path: {config}/{split}-*")
    readme = repo / "README.md"
    text = readme.read_text().removesuffix("---\n") if readme.exists() else "---\nconfigs:\n"
    readme.write_text(text + f"- config_name: {config}\n  data_files:\n" + "\n".join(entries) + "\n---\n")
    return repo


def assert_same_examples(task, loaded: dict, original: dict) -> None:
    assert loaded.keys() == original.keys()
    for split in original:
        assert len(loaded[split]) == len(original[split]), split
        for got, want in zip(loaded[split], original[split]):
            if task.kind == "regression":  # the hub's STS-B scores are float32
                assert got.pop("label") == pytest.approx(want["label"], abs=1e-6)
                want = {k: v for k, v in want.items() if k != "label"}
            assert got == want


@pytest.mark.parametrize("name", FILE_TASKS)
def test_save_to_disk_and_parquet_folders_give_the_release_files_examples(tmp_path, name):
    task = get_task(name)
    original = read_original(task, FIXTURES)
    save_to_disk(tmp_path / "saved", name)
    parquet_repository(tmp_path / "parquet" / task.benchmark, name)
    assert_same_examples(task, task.load_original(tmp_path / "saved"), original)
    assert_same_examples(task, task.load_original(tmp_path / "parquet"), original)


@pytest.mark.parametrize("name", ["superglue/multirc", "superglue/record", "glue/mnli", "glue/stsb"])
def test_the_hub_loader_converts_what_datasets_reads_from_a_parquet_repository(tmp_path, name):
    """``load_hub`` runs its own ``datasets.load_dataset(path, config)`` on a local copy of a hub
    repository: nested ``idx`` structs, ReCoRD's answer lists, MNLI's ``validation_matched``."""
    task = get_task(name)
    repo = parquet_repository(tmp_path / "repo", name)
    local = dataclasses.replace(task, hub=Hub(str(repo), task.hub.config, task.hub.validation))
    assert_same_examples(task, load_hub(local), read_original(task, FIXTURES))


def test_a_folder_in_none_of_the_layouts_names_the_folder_and_every_layout(tmp_path):
    (tmp_path / "superglue" / "cb").mkdir(parents=True)  # an empty folder is no layout either
    with pytest.raises(MissingDataFile) as err:
        load_splits("superglue/cb", 0, tmp_path)
    msg = str(err.value)
    assert f"missing file {tmp_path / 'superglue/CB/train.jsonl'} for superglue/cb" in msg
    assert f"{tmp_path} holds superglue/cb in none of the layouts --data-dir accepts" in msg
    assert f"a `save_to_disk` folder {tmp_path / 'superglue/cb'} (with dataset_dict.json)" in msg
    assert f"the hub's parquet files {tmp_path / 'superglue/cb/train'}-*.parquet and " in msg
    assert len(msg.splitlines()) == 1


def test_a_task_without_release_files_or_hub_source_says_what_it_accepts(tmp_path):
    task = dataclasses.replace(get_task("superglue/cb"), name="mine/cb", hub=None, layout=None)
    with pytest.raises(MissingDataFile, match=rf"no dataset_dict.json or parquet file in {tmp_path / 'mine/cb'}: "
                                              r".*a `save_to_disk` folder .*parquet files"):
        task.load_original(tmp_path)
    with pytest.raises(TaskDataError, match=r"mine/cb is not on the HuggingFace hub .*pass --data-dir DIR holding "
                                            r"a `save_to_disk` folder DIR/mine/cb"):
        task.load_original(None)


def test_a_saved_folder_without_the_validation_split(tmp_path):
    data = hub_dict("glue/mnli")
    datasets.DatasetDict({"train": data["train"], "validation": data["validation_matched"]}).save_to_disk(
        str(tmp_path / "glue/mnli"))
    with pytest.raises(TaskDataError, match=r"has no split validation_matched for glue/mnli; it has train, validation"):
        load_splits("glue/mnli", 0, tmp_path)


def test_parquet_files_without_the_validation_split(tmp_path):
    repo = parquet_repository(tmp_path / "glue", "glue/mrpc")
    (repo / "mrpc/validation-00000-of-00001.parquet").rename(repo / "mrpc/test-00000-of-00001.parquet")
    with pytest.raises(MissingDataFile, match=r"mrpc has no validation-\*\.parquet for glue/mrpc; it has "
                                              r"test-00000-of-00001.parquet, train-00000-of-00001.parquet"):
        load_splits("glue/mrpc", 0, tmp_path)


def test_labels_in_another_order_or_invalid_are_errors(tmp_path):
    data = hub_dict("superglue/cb")
    swapped = data.cast_column("label", datasets.ClassLabel(names=["neutral", "contradiction", "entailment"]))
    swapped.save_to_disk(str(tmp_path / "a/superglue/cb"))
    with pytest.raises(TaskDataError, match=r"the train labels are \['neutral', 'contradiction', 'entailment'\], "
                                            r"but superglue/cb's are \['entailment', 'contradiction', 'neutral'\]"):
        load_splits("superglue/cb", 0, tmp_path / "a")
    unlabeled = data.cast_column("label", datasets.Value("int64")).map(lambda row: {"label": -1})
    unlabeled.save_to_disk(str(tmp_path / "b/superglue/cb"))
    with pytest.raises(TaskDataError, match=r"malformed row in the `save_to_disk` folder .*: train row 0: "
                                            r"label -1 is not an index below 3"):
        load_splits("superglue/cb", 0, tmp_path / "b")


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_reads_a_saved_folder_and_a_parquet_repository(tmp_path, ray_session):
    from suite.cli import main
    from suite.rundir import load_records

    data_dir = tmp_path / "data"
    save_to_disk(data_dir, "superglue/cb")
    parquet_repository(data_dir / "glue", "glue/mrpc")
    out = tmp_path / "run"
    assert main(["run", "--methods", "lnfit", "--backbone", "tiny-bert", "--tasks", "superglue/cb,glue/mrpc",
                 "--data-dir", str(data_dir), "--epochs", "1", "--seeds", "0", "--out", str(out)]) == 0
    records = {r["task"]: r for r in load_records(out)}
    assert set(records) == {"superglue/cb", "glue/mrpc"}
    assert all(r["status"] == "ok" for r in records.values()), {t: r.get("error") for t, r in records.items()}
    assert set(records["superglue/cb"]["metrics"]["test"]) == {"macro_f1", "accuracy"}
    accuracy = (out / "accuracy.md").read_text()
    assert "CB" in accuracy and "MRPC" in accuracy
