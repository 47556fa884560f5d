"""Slot occupancy of a sweep on a local Ray cluster: how busy the slots were while work was ready.

Starts a local cluster (``ray.cluster_utils.Cluster``: a head without CPUs and two worker nodes of
``--cpus-per-node`` logical CPUs, one trial per CPU), runs ``python -m suite run`` of a checkout on
:data:`SWEEP` (two black-box jobs, two one-shot jobs and two manual jobs on tiny-bert) and prints
:func:`occupancy` of the run's records: the slot-seconds that trials worked, over the slot-seconds
that work was ready for (at each moment the smaller of the slots and the trials that could run:
every job's search or retrain once what it waits for has ended, a black-box job's candidates up to
its method's concurrency), from the first trial's start to the last one's end.

The times are the trials' own (``placement``: start and end of the work inside the trial, and its
node). A black-box job's candidates record theirs in the job's ``search.placements``; a run of a
checkout that does not write them (before the one-experiment driver) has them read from Ray Tune's
result file of each candidate trial instead (end: its last result's ``timestamp``, whole seconds;
start: that minus the trial's ``time_total_s``; no node).

    python bench/occupancy.py                        # this checkout
    git worktree add /tmp/occ-old 2cec68f            # the driver of three stages
    python bench/occupancy.py --checkout /tmp/occ-old
    git worktree remove /tmp/occ-old
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT, bench_parser

# two black-box (APET, best of 4 draws, 2 at once), two one-shot (S3Delta) and two manual (LoRA) jobs
SWEEP = ["--methods", "lora,s3delta,apet", "--seeds", "0,1", "--space", "s2", "--backbone", "tiny-bert",
         "--tasks", "demo/rotten_tomatoes", "--budget-params", "1000", "--allow-step-cap",
         "--max-train-samples", "256", "--max-eval-samples", "64", "--epochs", "2",
         "--method-option", "apet.candidates=4", "--method-option", "apet.max_concurrent=2",
         "--method-option", "apet.max_steps=16"]


@dataclass(frozen=True)
class Span:
    """One trial's work: its job, kind (search, candidate, retrain), start and end (s), node (or None)."""

    job: str
    kind: str
    start: float
    end: float
    node: str | None


@dataclass(frozen=True)
class Occupancy:
    """Slot-seconds worked (``busy``) over slot-seconds of ready work (``ready``), and the sweep's span."""

    busy: float
    ready: float
    wall: float
    trials: int
    most_per_node: dict[str, int]

    @property
    def value(self) -> float:
        return self.busy / self.ready if self.ready else 1.0


def _seconds(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def _span(job: str, kind: str, placement: dict) -> Span:
    return Span(job, kind, _seconds(placement["started_at"]), _seconds(placement["ended_at"]), placement.get("node_id"))


def _candidates_from_ray(out: Path, run_id: str) -> list[Span]:
    """A black-box job's candidates from Ray Tune's result files (a run that did not record them)."""
    spans = []
    for result in sorted(out.glob(f"ray/*{run_id}*/*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            end = rows[-1]["timestamp"]
            spans.append(Span(run_id, "candidate", end - rows[-1]["time_total_s"], end, None))
    return spans


def job_spans(out: Path) -> tuple[dict[str, dict], dict[str, list[Span]]]:
    """Every ok record of ``out`` by run id, and its trials' spans by run id."""
    records, spans = {}, {}
    for path in sorted((out / "records").glob("*.json")):
        record = json.loads(path.read_text())
        if record["status"] != "ok":
            continue
        run_id, search = record["run_id"], record["search"]
        records[run_id] = record
        mine = [_span(run_id, "retrain", record["retrain"]["placement"])]
        if "placement" in search:
            mine.append(_span(run_id, "search", search["placement"]))
        if record["method_kind"] == "black-box" and search.get("candidates", 1) > 1:
            placements = search.get("placements")
            mine += ([_span(run_id, "candidate", p) for p in placements] if placements is not None
                     else _candidates_from_ray(out, run_id))
        spans[run_id] = mine
    return records, spans


def _concurrency(record: dict) -> int:
    from methods import get_method

    return get_method(record["method"], record["method_config"]).max_concurrent()


def occupancy(out: Path | str, slots: int) -> Occupancy:
    """The slot occupancy of the run in ``out`` on ``slots`` slots (see the module docstring)."""
    records, spans = job_spans(Path(out))
    every = [s for job in spans.values() for s in job]
    t0, t1 = min(s.start for s in every), max(s.end for s in every)

    def ready(t: float) -> int:
        n = 0
        for run_id, mine in spans.items():
            retrain = next(s for s in mine if s.kind == "retrain")
            before = [s for s in mine if s.kind != "retrain"]
            waits_until = max((s.end for s in before), default=t0)
            n += waits_until <= t < retrain.end  # the retrain, once its search has ended
            candidates = [s for s in before if s.kind == "candidate"]
            if candidates:
                left = sum(s.end > t for s in candidates)
                n += min(_concurrency(records[run_id]), left)
            elif before:
                n += t < before[0].end  # a one-shot search, ready from the start
        return n

    times = sorted({t for s in every for t in (s.start, s.end)})
    busy = ready_s = 0.0
    for a, b in zip(times, times[1:]):
        mid = (a + b) / 2
        working = sum(s.start <= mid < s.end for s in every)
        busy += min(working, slots) * (b - a)
        ready_s += min(ready(mid), slots) * (b - a)
    most: dict[str, int] = {}
    for node in {s.node for s in every if s.node}:
        mine = [s for s in every if s.node == node]
        most[node] = max(sum(o.start <= s.start < o.end for o in mine) for s in mine)
    return Occupancy(busy, ready_s, t1 - t0, len(every), most)


def run_sweep(checkout: Path, out: Path, cpus_per_node: int, timeout: float = 1800,
              sweep: list[str] = SWEEP) -> float:
    """``python -m suite run`` of ``checkout`` on ``sweep`` on a fresh local cluster; its wall seconds."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0}, connect=False)
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=cpus_per_node)
        cluster.wait_for_nodes()
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "suite", "run", *sweep, "--address", cluster.address,
                        "--out", str(out)], cwd=checkout, env=env, check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - start
    finally:
        cluster.shutdown()


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the suite to run (default: this one)")
    parser.add_argument("--cpus-per-node", type=int, default=2, help="logical CPUs of each of the two workers")
    parser.add_argument("--out", type=Path, help="the run folder (default: a temporary one)")
    args = parser.parse_args()

    # a cluster of its own, in token-auth mode as `ray start` runs one, with short socket paths
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    with tempfile.TemporaryDirectory(prefix="occ", dir="/tmp") as tmp:
        os.environ["RAY_TMPDIR"] = tmp
        out = args.out or Path(tmp) / "run"
        wall = run_sweep(args.checkout.resolve(), out, args.cpus_per_node)
        slots = 2 * args.cpus_per_node
        result = occupancy(out, slots)
        records, _ = job_spans(out)
        print(f"{args.checkout.resolve()}: {len(records)} ok records, {result.trials} trials on {slots} slots, "
              f"{result.wall:.0f} s from the first trial's start to the last one's end ({wall:.0f} s the command)")
        print(f"  occupancy while work was ready: {result.value:.1%} ({result.busy:.0f} of {result.ready:.0f} "
              f"slot-seconds); most trials at once per node: {sorted(result.most_per_node.values())}")


if __name__ == "__main__":
    main()
