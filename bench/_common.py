"""The preamble every script of ``bench/`` shares: import it before anything that imports transformers.

Importing it puts the repository on ``sys.path`` (a script runs as ``python bench/NAME.py``, installed
or not) and sets :data:`ENVIRONMENT` where the caller has not set those variables (a benchmark never
downloads, reports Ray usage or prints transformers' warnings). :func:`bench_parser` is a script's argument
parser. It imports nothing but the standard library (``gpu_check.py`` runs where Ray and datasets are
absent).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared"  # data and backbones beside the checkout
ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TRANSFORMERS_VERBOSITY": "error",
}

for _name, _value in ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_parser(doc: str | None, data_dir: bool = False) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc`` (the script's docstring).

    Args:
        doc: the script's ``__doc__``.
        data_dir: add ``--data-dir``, the local GLUE/SuperGLUE files (default: the shared data folder).
    """
    out = argparse.ArgumentParser(description=(doc or "").strip().split("\n", 1)[0])
    if data_dir:
        out.add_argument("--data-dir", default=str(SHARED / "data"), help="local task files (default: %(default)s)")
    return out
