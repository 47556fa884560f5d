"""The README's "Add a task", followed once: a throw-away task whose one definition is a plugin module
that this test writes (with the task's release files), run through ``python -m suite run --plugin`` on
a tiny model, and found in the tables. No file of the suite changes or names it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from helpers import toy_examples

from suite.rundir import load_records
from suite.tasks import TASKS

# The whole definition, as the README's "Add a task" has it: fields, settings, where its files are.
PLUGIN = '''
from suite.tasks import TASKS
from suite.tasks.base import Task
from suite.tasks.files import Layout, Tsv

TASKS.register("throwaway/keywords", Task(
    "throwaway/keywords", "classification", ("sentence",), ("negative", "positive"), "keywords",
    metrics=("accuracy",), label="Keywords", epochs=1, batch_size=8,
    layout=Layout("throwaway/Keywords", Tsv({"sentence": "sentence"}, "label"))))
'''


def write_tsv(path, examples) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{ex['sentence']}\t{ex['label']}\n" for ex in examples))


def test_no_file_of_the_suite_names_the_throwaway_task():
    assert "throwaway/keywords" not in TASKS
    for package in ("core", "spaces", "methods", "suite"):
        for path in (ROOT / package).rglob("*.py"):
            assert "throwaway/keywords" not in path.read_text(), path


@pytest.mark.ray
@pytest.mark.slow
def test_a_task_added_by_its_definition_alone_runs_and_reaches_the_tables(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "throwaway_task.py").write_text(PLUGIN)
    write_tsv(tmp_path / "data/throwaway/Keywords/train.tsv", toy_examples(32, seed=0))
    write_tsv(tmp_path / "data/throwaway/Keywords/dev.tsv", toy_examples(16, seed=1))
    out = tmp_path / "run"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "suite", "run", "--plugin", "throwaway_task", "--methods", "lora",
                           "--backbone", "tiny-bert", "--tasks", "throwaway/keywords", "--data-dir",
                           str(tmp_path / "data"), "--seeds", "0", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = load_records(out)
    assert (record["task"], record["status"]) == ("throwaway/keywords", "ok"), record.get("error")
    assert set(record["metrics"]["test"]) == {"accuracy"}
    assert "Keywords" in (out / "accuracy.md").read_text()
