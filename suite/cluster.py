"""Connecting a run to Ray: a local instance by default, or a running cluster at ``--address``;
its resources checked before any stage, and Ray's own chatter kept off the terminal.

* :func:`prepare_environment` (before anything imports Ray: it reads these at import) makes a
  driver join a token-authenticated cluster as ``ray start --head`` makes one (Ray 2.60 turns token
  auth on for a head whenever ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN[_PATH]`` exists, but never
  for a driver given an explicit address; ``RAY_AUTH_MODE=token`` is harmless against a head
  without auth), and bounds the wait for an address that does not answer (Ray's default: ~14
  minutes; here ~16 s, and Ctrl+C gets through within ~8 s).
* :func:`connect` starts or joins Ray, after a TCP check of ``--address`` that fails at once with
  one line when nothing listens there, and checks that the cluster starts this driver's actors (a
  token-auth mismatch lets a driver connect while every trial is cancelled unstarted).
* :func:`check_storage` checks ``--storage`` before Ray starts: a local folder must be absolute and
  writable (a probe file is made and removed in it, or in its nearest existing parent, so nothing
  is left), a URI must be one pyarrow opens (Ray Tune opens it with ``pyarrow.fs.FileSystem.from_uri``).
* :func:`check_resources` refuses trials that ask for more CPUs or GPUs than any node has (Ray
  would wait for ever, printing "No trial is running" every minute).
* :func:`quiet_ray` sends Ray's and Ray Tune's log records to ``<out>/run.log`` (the terminal gets
  them back with ``--verbose``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "ray.air")


class ClusterError(ValueError):
    """The cluster cannot run the plan as asked; one line."""


def prepare_environment(address: str | None, verbose: bool) -> None:
    """Ray's settings that must be in the environment before ``import ray`` (see the module docstring)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no configuration box per stage
    if address is None:
        # Ray's own default for a new local instance (token auth, a token made if missing), set
        # explicitly: Ray then says nothing, where it would warn on the terminal at every run.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        return
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "2")  # connection attempts (default 20 x ~41 s)
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", "1")
    os.environ.setdefault("RAY_py_gcs_connect_timeout_s", "5")
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
        (Path.home() / ".ray" / "auth_token").is_file()
    if token:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _reachable(address: str) -> None:
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is not host:port (the head's GCS address, as `ray start --head` "
                           "prints it)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e.strerror or e} (is `ray start --head` "
                           "running there?)") from None


def connect(address: str | None) -> dict[str, Any]:
    """Start a local Ray instance (``address`` None) or join the cluster at ``address``; returns
    ``ray.cluster_resources()``."""
    if address not in (None, "auto"):  # "auto": Ray finds the cluster this machine's `ray start` joined
        _reachable(address)
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, TimeoutError, RuntimeError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            cause = e.__cause__ or e
            hint = (" (its token: `ray get-auth-token` on the head, given here as RAY_AUTH_TOKEN)"
                    if "auth" in str(cause).lower() else "")
            raise ClusterError(f"cannot connect to {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                               f"{hint}") from None
        if address is not None:
            _check_actors_start(address)
    return ray.cluster_resources()


def _check_actors_start(address: str) -> None:
    """Start one empty actor. A driver whose token-auth mode differs from the cluster's connects and
    runs tasks, but every actor (each Tune trial is one) is cancelled before it starts, and each
    trial would fail with "The actor never ran"."""
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def ping(self) -> bool:
            return True

    probe = Probe.remote()
    try:
        ray.get(probe.ping.remote(), timeout=60)
    except ray.exceptions.ActorDiedError:
        mode = os.environ.get("RAY_AUTH_MODE", "disabled")
        other = "disabled" if mode == "token" else "token"
        raise ClusterError(f"the Ray cluster at {address} cancels this driver's actors: its token authentication "
                           f"differs from the driver's (RAY_AUTH_MODE={mode}); run with RAY_AUTH_MODE={other}, "
                           "or start the cluster with the same mode") from None
    except ray.exceptions.GetTimeoutError:
        pass  # a busy cluster: the trials will wait for their resources as usual
    finally:
        ray.kill(probe)


def check_storage(storage: str | None) -> None:
    """``--storage`` (see the module docstring); a :class:`ClusterError` names the problem."""
    import tempfile

    from suite.rundir import not_a_folder

    if storage is None:
        return
    if "://" in storage:
        import pyarrow.fs

        try:
            _, local = pyarrow.fs.FileSystem.from_uri(storage)
        except (ValueError, OSError) as e:  # ArrowInvalid is a ValueError: an unknown scheme, a bad URI
            raise ClusterError(f"--storage {storage}: pyarrow cannot open it ({str(e).splitlines()[0]}); give an "
                               "absolute folder every node sees, or a URI such as s3://bucket/path") from None
        if not storage.startswith("file://"):
            return
        storage = local
    path = Path(storage)
    if not path.is_absolute():
        raise ClusterError(f"--storage {storage} is relative: give an absolute folder (every node must see it) or "
                           "a URI such as s3://bucket/path")
    problem = not_a_folder(path)
    if problem:
        raise ClusterError(f"--storage {storage} {problem}: give a folder")
    folder = next(p for p in (path, *path.parents) if p.exists())
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".storage-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ClusterError(f"--storage {storage}: cannot write in {folder} ({e.strerror or e})") from None


def node_resources() -> list[dict[str, float]]:
    """The resources of each alive node."""
    import ray

    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse a trial shape that no node of the cluster can hold."""
    nodes = node_resources()
    if not any(n.get("CPU", 0) >= cpus_per_trial and n.get("GPU", 0) >= gpus_per_trial for n in nodes):
        largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        raise ClusterError(
            f"no node of the cluster can run a trial of {cpus_per_trial:g} CPU(s) and {gpus_per_trial:g} GPU(s): "
            f"the largest has {largest.get('CPU', 0):g} CPU(s) and {largest.get('GPU', 0):g} GPU(s) "
            f"({len(nodes)} node(s)); lower --cpus-per-trial / --gpus-per-trial")


def quiet_ray(log_file: Path) -> None:
    """Ray's log records go to ``log_file`` only, not to the terminal."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
