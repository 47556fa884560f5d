"""The README's "Add a method", followed once: a throw-away package (``tests/plugins/throwaway_methods``)
that touches no file of the suite. Its methods are registered (the catalogues of
``test_one_shot_contract.py`` and ``test_blackbox_contract.py`` run over them, since the test
session imports the package), run through the real Ray stages with ``--plugin`` by a driver of their
own (which imports the package only as ``--plugin`` says), and appear in the tables with their labels."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from core.registry import Registry, load_target
from methods import METHODS
from suite.records import validate_dir
from suite.rundir import load_records

TINY = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "48",
        "--max-eval-samples", "24", "--epochs", "1", "--seeds", "0"]


def test_the_plugin_registers_checked_classes():
    assert {"throwaway-greedy", "throwaway-random"} <= set(METHODS.names())
    assert METHODS.get("throwaway-greedy").kind == "one-shot"
    assert METHODS.get("throwaway-random").kind == "black-box"


def test_no_file_of_the_suite_names_the_plugin():
    for package in ("core", "spaces", "methods", "suite"):
        for path in (ROOT / package).rglob("*.py"):
            assert "throwaway" not in path.read_text(), path


def test_a_registry_line_naming_another_class_is_refused():
    registry = Registry("method", base="methods.base:Method")
    registry.register("not-greedy", "throwaway_methods.greedy:Greedy")
    with pytest.raises(TypeError, match="name must equal its registry key"):
        registry.get("not-greedy")
    registry.register("config", "throwaway_methods.greedy:GreedyConfig")
    with pytest.raises(TypeError, match="not a Method"):
        registry.get("config")


def installed_entry_points(root, **entry_points: str) -> None:
    """A distribution under ``root`` (put ``root`` on sys.path) declaring ``entry_points`` in the methods group."""
    dist = root / "someone_elses_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: someone-elses-methods\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[autopeft_suite.methods]\n{lines}")


def test_an_entry_point_with_a_built_in_name_is_an_error_naming_both(tmp_path, monkeypatch):
    installed_entry_points(tmp_path, lora="someone_elses_methods.lora:BetterLoRA")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(METHODS, "_loaded_entry_points", False)  # read the entry points again
    for use in (lambda: METHODS.get("lora"), METHODS.names):  # every use refuses, not only the first
        with pytest.raises(ValueError, match="method 'lora' is already registered as methods.manual:LoRABaseline; "
                                             "it cannot also be an entry point of 'autopeft_suite.methods' as "
                                             "someone_elses_methods.lora:BetterLoRA"):
            use()


def test_entry_points_join_a_registry_and_a_name_is_registered_once(tmp_path, monkeypatch):
    installed_entry_points(tmp_path, mine="throwaway_methods.greedy:Greedy",
                           same="methods.manual:LoRABaseline")  # the target registered already: no conflict
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("method", entry_point_group="autopeft_suite.methods")
    registry.register("same", "methods.manual:LoRABaseline")
    assert {"mine", "same"} <= set(registry.names())
    with pytest.raises(ValueError, match="'mine' is already registered as throwaway_methods.greedy:Greedy; it "
                                         "cannot also be registered as pkg.module:Other"):
        registry.register("mine", "pkg.module:Other")


def test_every_built_in_registry_line_names_the_module_that_defines_its_class():
    targets = {}
    for path in ("methods/__init__.py", "spaces/__init__.py", "spaces/ops/__init__.py"):
        targets[path] = re.findall(r'"[\w-]+"[:,] "((?:methods|spaces)\.[\w.]+:\w+)"', (ROOT / path).read_text())
        for target in targets[path]:
            assert load_target(target).__module__ == target.partition(":")[0], f"{path}: {target} is a re-export"
    assert len(targets["methods/__init__.py"]) == len([n for n in METHODS.names() if not n.startswith("throwaway")])


def suite_run(*argv: str) -> subprocess.CompletedProcess:
    """``python -m suite run`` as a user runs it: a driver that has imported nothing of the plugin
    (this session has, for the catalogues), with the plugin's folder on PYTHONPATH (conftest)."""
    return subprocess.run([sys.executable, "-m", "suite", "run", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


@pytest.mark.ray
@pytest.mark.slow
def test_plugin_methods_run_through_ray_and_reach_the_tables(tmp_path):
    out = tmp_path / "run"
    argv = ["--methods", "throwaway-greedy,throwaway-random,lnfit", *TINY, "--budget-params", "2000", "--out", str(out)]
    unknown = suite_run(*argv)  # importable, but not imported without --plugin: the driver does not know it
    assert unknown.returncode == 2 and "unknown method 'throwaway-greedy'" in unknown.stderr, unknown.stderr
    done = suite_run(*argv, "--plugin", "throwaway_methods")  # the driver and every trial import it
    assert done.returncode == 0, done.stderr[-3000:]
    records = {r["method"]: r for r in load_records(out)}
    assert all(r["status"] == "ok" for r in records.values()), {m: r["error"] for m, r in records.items()}
    assert set(records) == {"throwaway-greedy", "throwaway-random", "lnfit"}
    assert records["throwaway-random"]["search"]["candidates"] == 2
    assert validate_dir(out) == []
    accuracy = (out / "accuracy.md").read_text()
    assert "Greedy (test)" in accuracy and "Random (test)" in accuracy
