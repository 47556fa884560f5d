"""A sweep fills its cluster: no barrier between searches and retrains, black-box jobs side by side.

``bench/occupancy.py``'s sweep (two black-box, two one-shot and two manual jobs on tiny-bert) on a
local cluster of a CPU-less head and two workers of 2 logical CPUs (4 slots), measured from the
records' placements with the same function the script prints.
"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT
from test_cluster import cluster, ray_tmp, records_by_id, suite_run  # noqa: F401 - fixtures

sys.path.insert(0, str(ROOT / "bench"))
from occupancy import SWEEP, job_spans, occupancy  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_sweep_keeps_every_slot_busy_while_work_is_ready(cluster, tmp_path):  # noqa: F811
    workers = {cluster.add_node(num_cpus=2).node_id for _ in range(2)}
    cluster.wait_for_nodes()
    out = tmp_path / "run"
    done = suite_run(*SWEEP, "--address", cluster.address, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    records = records_by_id(out)  # each job recorded exactly once
    assert len(records) == 6 and all(r["status"] == "ok" for r in records.values())

    result = occupancy(out, slots=4)
    assert result.value >= 0.9, result
    assert set(result.most_per_node) == workers and max(result.most_per_node.values()) <= 2, result

    _, spans = job_spans(out)
    candidates = [[s for s in mine if s.kind == "candidate"] for mine in spans.values()]
    first, second = [c for c in candidates if c]
    assert len(first) == len(second) == 4  # every candidate has its placement in its job's record
    # the two black-box jobs' candidates ran side by side ...
    assert any(a.start < b.end and b.start < a.end for a in first for b in second)
    # ... and a retrain started before the last candidate ended: no barrier between searches and retrains
    retrains = [s for mine in spans.values() for s in mine if s.kind == "retrain"]
    assert min(s.start for s in retrains) < max(s.end for s in first + second)
