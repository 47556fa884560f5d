"""Every script of ``bench/`` still starts (``--help``), with the shared preamble of ``bench/_common.py``.

The benchmarks themselves are not run here (they take minutes to hours); this catches a script that no
longer imports or builds its arguments. Each runs without PYTHONPATH, as the README's commands do.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))


def test_there_are_bench_scripts():
    assert len(SCRIPTS) >= 7


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_prints_its_help(script):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {script}")
    first_line = (ROOT / "bench" / script).read_text().split('"""')[1].strip().split("\n")[0]
    assert first_line[:40] in " ".join(proc.stdout.split())  # the description is the docstring's first line
