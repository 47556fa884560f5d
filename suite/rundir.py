"""The run folder (``--out``): where everything of a run lives, how it is written and read back.

::

    run.json                          the plan (suite.plan), read by --resume
    run.lock                          while a command runs in the folder: its OS lock and process id (RunLock)
    run.log                           Ray's and Ray Tune's log lines (without --verbose)
    records/<run_id>.json             one record per job (suite.records)
    architectures/<run_id>.json       what its search found (an Architecture)
    search/<run_id>.json              the search's seconds and what it reported
    traces/<run_id>/                  a one-shot search's trace (core.trace names its files)
    lr_trials/<run_id>/lr<rate>/      --lr-grid: each ended rate's retrain, until the job's record (suite.learning_rate)
    weights/<run_id>.safetensors      the retrain's trained weights (unless --no-save-weights)
    predictions/<run_id>.jsonl.gz     its test predictions, one JSON line per example
    ray/                              Ray Tune's experiments (unless --storage puts them elsewhere)
    tensorboard/, tracking.json       --log: each record's TensorBoard session; what was logged (suite.tracking)
    merged.json                       a merged report's folder: its source runs (suite.merge)
    leaderboard.csv ... report.html   the reports, rebuilt from the records (suite.report)

Everything is keyed by the job's run id (:attr:`suite.plan.Job.run_id`). JSON files are written by
:func:`write_json_atomic` (a reader sees the old file or the whole new one, also after a crash) and
read by :func:`read_json`, whose error names the file, so a truncated record or plan is one clear line;
a file that cannot be written is a :class:`RunWriteError` that names it. A command holds the folder's
:class:`RunLock` for its whole life, so two commands never run in one folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.artifacts import WEIGHTS_FILE
from suite.outcomes import SearchOutcome

PLAN_FILE = "run.json"
LOCK_FILE = "run.lock"
LOG_FILE = "run.log"
RAY_DIR = "ray"
TENSORBOARD, TRACKING_FILE, MERGED_FILE = "tensorboard", "tracking.json", "merged.json"
RECORDS, ARCHITECTURES, SEARCH, TRACES, WEIGHTS, PREDICTIONS = (
    "records", "architectures", "search", "traces", "weights", "predictions")
LR_TRIALS = "lr_trials"  # a job's folder of folders, only while its learning-rate grid runs
# The folders with one entry per job: the entry is the run id and this suffix (a trace is a folder).
PER_JOB = {RECORDS: ".json", ARCHITECTURES: ".json", SEARCH: ".json", TRACES: "", WEIGHTS: ".safetensors",
           PREDICTIONS: ".jsonl.gz"}
# What a retrain trial leaves in its Tune checkpoint, filed under weights/ and predictions/.
CHECKPOINT_FILES = {WEIGHTS: WEIGHTS_FILE, PREDICTIONS: "predictions.jsonl.gz"}
REPORTS = ("leaderboard.csv", "summary.csv", "comparison.csv", "accuracy.md", "efficiency.md", "comparison.md",
           "architectures.md", "reported.md", "comparison.png", "ranks.png", "pareto.png", "budget.png",
           "placements.png", "report.html")


class RunFileError(ValueError):
    """A file of a run folder that cannot be read as what it should be; the message names it."""


class RunWriteError(ValueError):
    """A file of a run folder that cannot be written (a read-only folder, a full disk); names it."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(f"{error.strerror or error}: cannot write {path}")
        self.path = Path(path)


def write_error_in(error: BaseException) -> RunWriteError | None:
    """The :class:`RunWriteError` behind ``error``, or None: Ray Tune turns an error of a callback (one
    that writes a record) into a ``TuneError`` raised while handling it."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, RunWriteError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class RunBusyError(ValueError):
    """Another command holds the run folder (the message names its process id), or a new run finds one there."""


def not_a_folder(path: Path | str) -> str | None:
    """Why no folder can be at ``path`` (``"is a file"``, ``"is under the file F"``), or None."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is None:
        return None
    return "is a file" if blocker == path else f"is under the file {blocker}"


def entry(folder: str, run_id: str) -> Path:
    """The path of a job's entry in one of the :data:`PER_JOB` folders, relative to the run folder
    (what a record keeps: never a path of the machine the run happened on)."""
    return Path(folder) / f"{run_id}{PER_JOB[folder]}"


class RunDir:
    """The folder of one run; ``RunDir(out).record(run_id)`` and so on are where things live."""

    def __init__(self, out: Path | str):
        self.root = Path(out)

    @property
    def plan(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def ray(self) -> Path:
        return self.root / RAY_DIR

    @property
    def records(self) -> Path:
        return self.root / RECORDS

    def path(self, folder: str, run_id: str) -> Path:
        return self.root / entry(folder, run_id)

    def record(self, run_id: str) -> Path:
        return self.path(RECORDS, run_id)

    def trace(self, run_id: str) -> Path:
        return self.path(TRACES, run_id)

    def report(self, name: str) -> Path:
        """Where the report ``name`` is written (one of :data:`REPORTS`: a new report is named here first)."""
        if name not in REPORTS:
            raise ValueError(f"{name!r} is not a report of the run folder; valid: {', '.join(REPORTS)}")
        return self.root / name

    # ---- searches ----------------------------------------------------------------------------------
    def save_search(self, run_id: str, outcome: SearchOutcome) -> None:
        """A finished search: its architecture (a plain ``Architecture`` file) and its facts."""
        write_json_atomic(self.path(SEARCH, run_id), {"search_s": outcome.search_s, "search": outcome.info})
        write_json_atomic(self.path(ARCHITECTURES, run_id), outcome.architecture)

    def load_search(self, run_id: str) -> SearchOutcome | None:
        """What an earlier run of this folder found for ``run_id`` (None: no architecture saved)."""
        path = self.path(ARCHITECTURES, run_id)
        if not path.is_file():
            return None
        facts = self.path(SEARCH, run_id)
        saved = read_json(facts, "a search's facts") if facts.is_file() else {"search_s": None, "search": {}}
        return SearchOutcome(read_json(path, "an architecture"), saved["search_s"], saved["search"])

    # ---- a retrain's files -------------------------------------------------------------------------
    def file_checkpoint(self, run_id: str, folder: Path) -> dict[str, dict]:
        """Copy a retrain's weights and test predictions from its checkpoint ``folder`` to
        ``weights/`` and ``predictions/``; their paths (relative to the run folder), sha256 and bytes."""
        files: dict[str, dict] = {}
        for key, name in CHECKPOINT_FILES.items():
            source, target = Path(folder) / name, self.path(key, run_id)
            if not source.is_file():
                continue
            with writing(target):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            files[key] = {"path": str(entry(key, run_id)), "sha256": file_sha256(target), "bytes": target.stat().st_size}
        return files

    # ---- records -----------------------------------------------------------------------------------
    def record_files(self, empty_ok: bool = False) -> list[Path]:
        """The record files, sorted; ``FileNotFoundError`` if the folder holds no run (no ``records/``,
        or, unless ``empty_ok``, no record in it)."""
        if not self.records.is_dir():
            raise FileNotFoundError(f"{self.root} holds no run: {self.records} does not exist")
        files = sorted(self.records.glob("*.json"))
        if not files and not empty_ok:
            raise FileNotFoundError(f"{self.root} holds no run: {self.records} has no records")
        return files

    def clean_leftovers(self) -> None:
        """Temporary files a killed writer left (``.<name>.<random>.tmp``): the rename never happened."""
        for folder in (self.root, *(self.root / name for name in PER_JOB if name != TRACES)):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def load_records(out: Path | str, status: str | None = None) -> list[dict[str, Any]]:
    """Every record under ``<out>/records`` (optionally only those with ``status``), sorted by run id
    (not validated: :func:`suite.records.read_records` does that)."""
    records = [read_json(p, "a record") for p in RunDir(out).record_files(empty_ok=True)]
    return [r for r in records if status is None or r.get("status") == status]


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (a full fine-tuning's weights are the backbone's size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path, what: str = "a JSON file") -> Any:
    """The JSON in ``path``; a truncated or foreign file is a :class:`RunFileError` that names it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path} is not {what}: invalid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                           "it was cut short or written by something else") from None
    except UnicodeDecodeError:
        raise RunFileError(f"{path} is not {what}: it is not text") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: readable by the group on shared storage


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder, fsync and a rename (a
    reader sees the old file or the whole new one, also after a crash); :class:`RunWriteError` if the
    folder cannot be written."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600 files
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2, sort_keys=False, default=_jsonable)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """An ``OSError`` of the body (writing ``path``) becomes a :class:`RunWriteError` that names it."""
    try:
        yield
    except OSError as e:
        raise RunWriteError(path, e) from e


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class RunLock:
    """The lock a command holds on its run folder for its whole life (``with RunLock(out): ...``).

    An OS lock (``fcntl.flock``) on ``run.lock``, which holds the holder's process id: the kernel
    drops it when the process ends, also after ``kill -9``, so it is never stale. A second command
    into the folder gets a :class:`RunBusyError` at once, naming the folder and the holder. The
    file is removed on release (one that ``kill -9`` left is only removed by the next holder); so are
    the folders :meth:`acquire` made if they are still empty: a refused command leaves nothing. ``new_run``: the folder must hold no run, checked once the lock
    is held, so that of two commands started at once into one folder only one starts a run.
    """

    def __init__(self, out: Path | str, new_run: bool = False):
        self.root, self.new_run = Path(out), new_run
        self.path = self.root / LOCK_FILE
        self._fd: int | None = None
        self._ours = False  # the file is this command's to remove: it made it, or wrote its process id
        self._made: list[Path] = []

    def acquire(self) -> RunLock:
        self._made = [p for p in (self.root, *self.root.parents) if not p.exists()]  # deepest first
        try:
            with writing(self.path):
                self.root.mkdir(parents=True, exist_ok=True)
                while self._fd is None:
                    self._lock_the_file()
            if self.new_run and RunDir(self.root).plan.exists():
                raise RunBusyError(f"{self.root} already holds a run: add --resume to continue it, or choose "
                                   "another --out")
            with writing(self.path):
                os.ftruncate(self._fd, 0)
                os.write(self._fd, f"{os.getpid()}\n".encode())
                self._ours = True
        except BaseException:
            self.release()
            raise
        return self

    def _lock_the_file(self) -> None:
        """Open and lock the file (``_fd``); leave ``_fd`` None to try again (the holder removed the file
        between our open and our lock, or between two opens)."""
        try:
            fd, made = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE), True
        except FileExistsError:
            try:
                fd, made = os.open(self.path, os.O_RDWR), False
            except FileNotFoundError:
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "not yet written"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunBusyError(f"{self.root} is in use by another command (process id {holder}, holding "
                               f"{self.path}): wait for it to end, or choose another --out") from None
        if _same_file(fd, self.path):
            self._fd, self._ours = fd, made
        else:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            if self._ours:  # before the lock goes: whoever opened this file re-checks it is still the path's
                with contextlib.suppress(OSError):  # a folder become read-only keeps the file, never the lock
                    self.path.unlink()
            os.close(self._fd)
            self._fd, self._ours = None, False
        for folder in self._made:  # what acquire made, if nothing else was written there
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
