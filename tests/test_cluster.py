"""Scale-out, shown on one machine: a Ray cluster of a head and worker nodes (``ray.cluster_utils``),
a lost node, a driver killed with SIGKILL, logical GPUs, shared storage, and a real ``ray start`` head.

Every run is ``python -m suite run`` in a subprocess, as a user runs it, joined to the cluster with
``--address``. The head has no CPUs, so every trial runs on a worker node, and each record says
which (``retrain.placement``).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from suite.records import validate_dir
from suite.rundir import CHECKPOINT_FILES, load_records

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "48",
        "--max-eval-samples", "24", "--epochs", "1"]
# 2048 steps (~10-20 s a trial here, validated each epoch): long enough to lose a node mid-trial.
LONGER = ["--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--max-train-samples", "512",
          "--max-eval-samples", "24", "--epochs", "32", "--batch-size", "8"]


@pytest.fixture
def ray_tmp(monkeypatch):
    """A short private Ray temp folder (socket paths must stay under 108 bytes): the cluster's
    sessions and its address file stay out of /tmp/ray, which other Ray instances use."""
    folder = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def make_cluster(auth_mode: str, monkeypatch):
    """A head without CPUs, its nodes in token-auth mode ``auth_mode`` (``ray start`` turns token auth
    on when a token exists, so "token" is how a user's cluster runs; the driver below inherits it)."""
    monkeypatch.setenv("RAY_AUTH_MODE", auth_mode)  # read when Ray is first imported
    from ray.cluster_utils import Cluster

    return Cluster(initialize_head=True, head_node_args={"num_cpus": 0}, connect=False)


@pytest.fixture
def cluster(ray_tmp, monkeypatch):
    c = make_cluster("token", monkeypatch)
    yield c
    c.shutdown()


def suite_run(*argv: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite", "run", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **env})


def start_run(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "suite", "run", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def wait_for(condition, what: str, timeout: float = 600, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def running_trials(storage: Path) -> int:
    """Retrain trials that have reported (the harness reports at its first validation)."""
    return sum(1 for f in storage.glob("*/retrain-*/result.json") if f.stat().st_size > 0)


def records_by_id(out: Path) -> dict[str, dict]:
    records = load_records(out)
    ids = [r["run_id"] for r in records]
    assert len(ids) == len(set(ids)), ids  # each job recorded exactly once
    return {r["run_id"]: r for r in records}


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


# ---- a cluster of a head and two workers --------------------------------------------------------
def test_a_sweep_uses_both_worker_nodes_and_writes_each_record_once(cluster, tmp_path):
    workers = {cluster.add_node(num_cpus=1).node_id for _ in range(2)}
    cluster.wait_for_nodes()
    out, storage = tmp_path / "run", tmp_path / "shared-storage"
    done = suite_run("--methods", "lora,bitfit", *TINY, "--seeds", "0,1", "--address", cluster.address,
                     "--storage", str(storage), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    records = records_by_id(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    nodes = [r["retrain"]["placement"]["node_id"] for r in records.values()]
    assert set(nodes) == workers, nodes  # both workers ran trials, the CPU-less head none
    assert validate_dir(out) == []
    # --storage: Ray Tune's trial state went to the shared folder, the records and tables to --out
    assert list(storage.glob("*/retrain-*/result.json")) and not (out / "ray").exists()
    assert (out / "accuracy.md").is_file() and not list(storage.rglob("records"))


def test_a_lost_node_is_retried_on_the_other_and_the_attempt_is_recorded(cluster, tmp_path):
    first, second = (cluster.add_node(num_cpus=1) for _ in range(2))
    cluster.wait_for_nodes()
    out = tmp_path / "run"
    proc = start_run("--methods", "lora,bitfit", *LONGER, "--seeds", "0,1", "--address", cluster.address,
                     "--max-failures", "2", "--checkpoint-every", "16", "--out", str(out))
    try:
        # both workers busy, no record yet: one trial runs on the node about to go
        wait_for(lambda: running_trials(out / "ray") >= 2, "two trials running", proc=proc)
        assert not list((out / "records").glob("*.json")), "trials too short to lose a node mid-trial"
        cluster.remove_node(second, allow_graceful=False)
        assert proc.wait(timeout=900) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    records = records_by_id(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    attempts = {run_id: r["retrain"]["attempts"] for run_id, r in records.items()}
    retried = [run_id for run_id, n in attempts.items() if n > 1]
    assert retried, attempts  # the trial that was on the lost node ran again...
    for run_id in retried:  # ...on the node that is left, from its last checkpoint (one every 16 steps)
        assert records[run_id]["retrain"]["placement"]["node_id"] == first.node_id
        resumed_at = records[run_id]["retrain"]["resumed_at"]
        assert resumed_at and resumed_at[0] >= 16, resumed_at


# ---- a killed driver ----------------------------------------------------------------------------
def test_a_driver_killed_mid_retrain_resumes_without_losing_or_duplicating(ray_tmp, tmp_path):
    out = tmp_path / "run"
    proc = start_run("--methods", "lnfit,bitfit,lora", *TINY, "--max-train-samples", "256", "--epochs", "4",
                     "--seeds", "0", "--cpus-per-trial", "2", "--out", str(out))
    wait_for(lambda: list((out / "records").glob("*.json")), "the first record", proc=proc)
    first = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    ray_processes = descendants(proc.pid)
    assert ray_processes, "the run started no Ray processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    # the local Ray instance the killed run started goes away by itself (Ray's reaper), so nothing blocks a resume
    wait_for(lambda: not alive(ray_processes), "the killed run's Ray processes to exit", timeout=120)
    resumed = suite_run("--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = records_by_id(out)
    assert sorted(r["method"] for r in records.values()) == ["bitfit", "lnfit", "lora"]
    assert all(r["status"] == "ok" for r in records.values())
    for name, data in first.items():  # finished before the kill: untouched
        assert (out / "records" / name).read_bytes() == data
    assert not list((out / "records").glob("*.tmp"))
    accuracy = (out / "accuracy.md").read_text()
    assert all(label in accuracy for label in ("| BitFit", "| LNFit", "| LoRA"))


def saved_checkpoint(storage: Path) -> bool:
    """Whether the saved state of the run's experiment (what ``--resume`` restores) holds a trial
    whose last result came with a checkpoint."""
    for path in storage.glob("*/experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (OSError, ValueError):  # being written
            continue
        if any(json.loads(metadata)["last_result"].get("checkpoint_dir_name") for _, metadata in trials):
            return True
    return False


def filed(out: Path, record: dict) -> tuple[dict, dict, list]:
    """A retrain's weights, their metadata and its test predictions, as filed beside its record (the
    files' bytes differ between runs: gzip keeps a time, safetensors its metadata in any order)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = out / record["files"]["weights"]["path"]
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    weights = load_file(path)
    with gzip.open(out / record["files"]["predictions"]["path"], "rt") as f:
        predictions = [json.loads(line) for line in f]
    return weights, metadata, predictions


def test_a_retrain_killed_after_its_checkpoint_resumes_from_it_bit_for_bit(ray_tmp, tmp_path):
    """``kill -9`` of the driver once a mid-trial checkpoint is in the experiment's saved state:
    ``--resume`` continues the retrain from it, not from step 0, and ends with the metrics, history,
    weights and predictions of an unbroken run, bit for bit."""
    argv = ("--methods", "lora", *LONGER, "--epochs", "8", "--checkpoint-every", "16", "--seeds", "0")
    whole = suite_run(*argv, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "run"
    proc = start_run(*argv, "--out", str(out))
    wait_for(lambda: saved_checkpoint(out / "ray"), "a mid-trial checkpoint in the saved state", proc=proc)
    ray_processes = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not list((out / "records").glob("*.json")), "the retrain ended before the kill"
    wait_for(lambda: not alive(ray_processes), "the killed run's Ray processes to exit", timeout=120)
    resumed = suite_run("--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (unbroken,), (record,) = load_records(tmp_path / "whole"), load_records(out)
    assert unbroken["retrain"]["resumed_at"] == [] and len(record["retrain"]["resumed_at"]) == 1
    assert record["harness"]["checkpoint_every"] == unbroken["harness"]["checkpoint_every"] == "16"
    assert 0 < record["retrain"]["resumed_at"][0] < record["retrain"]["steps"]  # not from step 0
    assert record["metrics"] == unbroken["metrics"] and record["params"] == unbroken["params"]
    for key in ("steps", "best_step", "history", "train_examples", "train_tokens"):
        assert record["retrain"][key] == unbroken["retrain"][key], key
    weights, metadata, predictions = filed(out, record)
    unbroken_weights, unbroken_metadata, unbroken_predictions = filed(tmp_path / "whole", unbroken)
    assert metadata == unbroken_metadata and predictions == unbroken_predictions
    assert weights.keys() == unbroken_weights.keys()
    assert all(torch.equal(weights[name], unbroken_weights[name]) for name in weights)
    kept = sorted(out.glob("ray/*/retrain-*/checkpoint_*"), key=lambda p: p.name)  # Ray keeps the latest two
    assert 1 <= len(kept) <= 2
    final = kept[-1]  # the final one holds the files the record names, as before
    assert sorted(p.name for p in final.iterdir() if not p.name.startswith(".")) == sorted(CHECKPOINT_FILES.values())


# ---- logical GPUs -------------------------------------------------------------------------------
def test_half_a_gpu_per_trial_runs_four_at_once_each_with_its_device(cluster, tmp_path):
    cluster.add_node(num_cpus=4, num_gpus=2)  # logical: Ray schedules them, the trials train on the CPU
    cluster.wait_for_nodes()
    out = tmp_path / "run"
    done = suite_run("--methods", "lora,bitfit", *TINY, "--max-train-samples", "256", "--epochs", "2",
                     "--seeds", "0,1", "--gpus-per-trial", "0.5", "--address", cluster.address, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    records = records_by_id(out).values()
    assert len(records) == 4
    devices = sorted(r["retrain"]["placement"]["cuda_visible_devices"] for r in records)
    assert set(devices) <= {"0", "1"} and all(devices), devices  # each trial saw a GPU id of its own node
    assert all(r["environment"]["hardware"]["gpus_per_trial"] == 0.5 for r in records)
    # four at once: every trial was still training when the last one started
    spans = [(r["retrain"]["placement"]["started_at"], r["retrain"]["placement"]["ended_at"]) for r in records]
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


def test_a_whole_gpu_per_trial_on_a_cpu_cluster_is_refused_before_any_trial(cluster, tmp_path):
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    out = tmp_path / "run"
    done = suite_run("--methods", "lora", *TINY, "--gpus-per-trial", "1", "--address", cluster.address,
                     "--out", str(out), timeout=120)
    assert done.returncode == 2
    assert "no node of the cluster can run a trial of 1 CPU(s) and 1 GPU(s)" in done.stderr
    assert done.stderr.count("\n") == 1 and not out.exists()


def test_a_cluster_in_another_token_auth_mode_is_refused_in_one_line(ray_tmp, monkeypatch, tmp_path):
    c = make_cluster("disabled", monkeypatch)
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        out = tmp_path / "run"
        done = suite_run("--methods", "bitfit", *TINY, "--address", c.address, "--out", str(out), timeout=180,
                         RAY_AUTH_MODE="token")
    finally:
        c.shutdown()
    assert done.returncode == 2, done.stderr[-3000:]
    assert "cancels this driver's actors" in done.stderr and "RAY_AUTH_MODE=disabled" in done.stderr
    assert done.stderr.count("\n") == 1 and not out.exists()


# ---- a real `ray start` head on loopback -------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_joins_a_ray_start_head_as_a_user_runs_it(ray_tmp, tmp_path):
    port = free_port()
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                             "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={ray_tmp}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(lambda: _listening(port), "the head to listen", timeout=120)
        out = tmp_path / "run"
        done = suite_run("--methods", "bitfit", *TINY, "--address", f"127.0.0.1:{port}", "--out", str(out))
        assert done.returncode == 0, done.stderr[-3000:]
        (record,) = load_records(out)
        assert record["status"] == "ok" and record["retrain"]["placement"]["hostname"] == socket.gethostname()
        screen = done.stdout + done.stderr
        assert "Token authentication" not in screen and "Trial status" not in screen  # Ray's notices: run.log
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
        head.wait(timeout=60)


def test_an_unreachable_address_fails_in_one_line_at_once(tmp_path):
    out = tmp_path / "run"
    started = time.time()
    done = suite_run("--methods", "bitfit", *TINY, "--address", f"127.0.0.1:{free_port()}", "--out", str(out),
                     timeout=120)
    assert done.returncode == 2 and time.time() - started < 60
    assert "cannot reach the Ray cluster at 127.0.0.1:" in done.stderr and done.stderr.count("\n") == 1
    assert not out.exists()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
