"""What a run shows while it works: one compact view per stage instead of Ray Tune's status boxes.

A Ray Tune callback (:class:`StageView`) keeps, for each trial of a stage, its phase, step / total,
latest validation metric, elapsed time and an ETA, and prints the running trials as a small table
(``rich``) every ``every`` seconds and when a trial ends. Trials report ``step`` and ``total``
(the harness and the one-shot searches do), and any ``val_*`` metric. Ray's own progress tables
go to ``<out>/run.log`` (or the terminal with ``--verbose``).
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.table import Table


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class TrialState:
    """The latest that one trial said about itself."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phase, self.step, self.total, self.metric, self.status = "starting", None, None, None, "running"

    def update(self, result: dict[str, Any], phase: str) -> None:
        self.phase = result.get("phase", phase)
        self.step = result.get("step", result.get("training_iteration"))
        self.total = result.get("total", self.total)
        metrics = {k: v for k, v in result.items() if k.startswith("val_") and isinstance(v, (int, float))}
        if metrics:
            name, value = next(iter(metrics.items()))
            self.metric = f"{name[4:]} {value:.1f}"

    def eta(self) -> float | None:
        if not self.step or not self.total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.step * max(0, self.total - self.step)


class StageView(Callback):
    """A Ray Tune callback that prints the compact view of ``stage`` (``total_trials`` trials) every
    ``every`` seconds and when a trial ends. Tune pickles its callbacks with the experiment (for a
    resume), so the console is made on first use and never pickled."""

    def __init__(self, stage: str, total_trials: int, every: float = 30.0, console: Console | None = None):
        self.stage, self.total_trials, self.every, self._console = stage, total_trials, every, console
        self.trials: dict[str, TrialState] = {}
        self.done = self.failed = 0
        self.last = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_console": None}

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(highlight=False)
        return self._console

    @staticmethod
    def _name(trial) -> str:
        config = trial.config or {}
        return (config.get("trial") or {}).get("run_id") or str(trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.trials[self._name(trial)] = TrialState()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trials.setdefault(self._name(trial), TrialState()).update(result, self.stage)
        if time.monotonic() - self.last >= self.every:
            self.show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "failed")

    def _end(self, trial, status: str) -> None:
        state = self.trials.pop(self._name(trial), None)
        self.done += status == "done"
        self.failed += status == "failed"
        took = _clock(time.monotonic() - state.started) if state else "–"
        ended = f"{self.done + self.failed}/{self.total_trials} ended{f', {self.failed} failed' if self.failed else ''}"
        self.console.print(f"[{self.stage}] {self._name(trial)} {status} in {took} ({ended})", markup=False)

    def show(self) -> None:
        self.last = time.monotonic()
        if not self.trials:
            return
        table = Table(title=f"{self.stage}: {self.done + self.failed}/{self.total_trials} ended, "
                            f"{len(self.trials)} running", title_justify="left", box=None, pad_edge=False)
        for column in ("trial", "phase", "step", "validation", "elapsed", "eta"):
            table.add_column(column, justify="right" if column in ("step", "elapsed", "eta") else "left")
        for name, t in self.trials.items():
            step = f"{t.step}/{t.total}" if t.total else (str(t.step) if t.step is not None else "–")
            table.add_row(name, t.phase, step, t.metric or "–", _clock(time.monotonic() - t.started), _clock(t.eta()))
        self.console.print(table)
