"""What a run shows while it works: one compact view of its experiment instead of Ray Tune's status boxes.

A Ray Tune callback (:class:`RunView`) keeps, for each running trial, its kind (search, candidate,
retrain), its job, its phase, step / total, latest validation metric, elapsed time and an ETA, and
prints them as a small table (``rich``) every ``every`` seconds, titled with the run's progress (jobs
done of all); each trial that ends is one line. Trials report ``step`` and ``total`` (the harness and
the one-shot searches do), and any ``val_*`` metric. Ray's own progress tables go to
``<out>/run.log`` (or the terminal with ``--verbose``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
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

    def __init__(self, config: dict[str, Any]) -> None:
        self.kind, self.name = config.get("kind", "trial"), config.get("name", "?")
        self.job = (config.get("trial") or {}).get("run_id", "?")
        if "index" in config:  # one of a job's several trials (a black-box candidate)
            self.job += f" #{config['index']}"
        self.started = time.monotonic()
        self.phase, self.step, self.total, self.metric = "starting", None, None, None

    def update(self, result: dict[str, Any]) -> None:
        self.phase = result.get("phase", self.kind)
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


class RunView(Callback):
    """A Ray Tune callback that prints the run's running trials every ``every`` seconds and a line per
    ended trial; ``progress()`` gives the jobs ``(ok, failed, all)``. Tune pickles its callbacks with
    the experiment (for a resume), so the console is made on first use and never pickled."""

    def __init__(self, progress: Callable[[], tuple[int, int, int]], every: float = 30.0,
                 console: Console | None = None):
        self.progress, self.every, self._console = progress, every, console
        self.trials: dict[str, TrialState] = {}
        self.last = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_console": None, "trials": {}}

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(highlight=False)
        return self._console

    def jobs(self) -> str:
        ok, failed, total = self.progress()
        return f"jobs {ok + failed}/{total} done{f', {failed} failed' if failed else ''}"

    def _state(self, trial) -> TrialState:
        return self.trials.setdefault(trial.trial_id, TrialState(trial.config or {}))

    def on_trial_start(self, iteration, trials, trial, **info):
        self.trials[trial.trial_id] = TrialState(trial.config or {})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._state(trial).update(result)
        if time.monotonic() - self.last >= self.every:
            self.show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "failed")

    def _end(self, trial, status: str) -> None:
        state = self.trials.pop(trial.trial_id, None)
        took = _clock(time.monotonic() - state.started) if state else "–"
        state = state or TrialState(trial.config or {})
        self.console.print(f"[{state.kind}] {state.name} {status} in {took} ({self.jobs()})", markup=False)

    def show(self) -> None:
        self.last = time.monotonic()
        if not self.trials:
            return
        table = Table(title=f"run: {self.jobs()}, {len(self.trials)} trial(s) running", title_justify="left",
                      box=None, pad_edge=False)
        for column in ("kind", "job", "phase", "step", "validation", "elapsed", "eta"):
            table.add_column(column, justify="right" if column in ("step", "elapsed", "eta") else "left")
        for t in self.trials.values():
            step = f"{t.step}/{t.total}" if t.total else (str(t.step) if t.step is not None else "–")
            table.add_row(t.kind, t.job, t.phase, step, t.metric or "–", _clock(time.monotonic() - t.started),
                          _clock(t.eta()))
        self.console.print(table)
