"""How long a run takes on N slots: a discrete-event simulation of the run's one experiment.

It replays what :class:`suite.schedule.PlanSearcher` and Ray Tune do with trials of known length:

* the searcher hands out the first ready work, in the order of :data:`suite.schedule.ORDER`: a
  black-box candidate of any job under its own method's concurrency limit (in the plan's job order),
  then a one-shot search, then a retrain of a job whose architecture is known; a manual job's
  architecture is known at once, a black-box job's once all its candidates have ended, a one-shot
  job's once its search has ended;
* Ray Tune asks the searcher for trials while fewer than ``pending`` suggested trials wait for a slot
  (the driver sets ``TUNE_MAX_PENDING_TRIALS_PG`` to the slots), and starts waiting trials first in,
  first out, as slots free. A suggestion may so wait while later work becomes ready, as in a real run.

:func:`simulate` takes each job as a :class:`Pipeline` of trial lengths in seconds (from
:mod:`suite.dryrun`, or made by hand in a test) and returns the :class:`Schedule`: when the last
trial ends, the compute, each trial's start and end. The lengths include whatever a trial costs
besides its steps (its set-up, Ray Tune's bookkeeping between trials); the run's own start-up is
added by the caller.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

CANDIDATE, SEARCH, RETRAIN = "candidate", "search", "retrain"
ORDER = (CANDIDATE, SEARCH, RETRAIN)  # as suite.schedule.ORDER (a test keeps the two equal)


@dataclass(frozen=True)
class Pipeline:
    """One job's trials as lengths in seconds.

    Attributes:
        name: the job (its run id).
        kind: ``"one-shot"``, ``"black-box"``, ``"manual"`` or ``"transfer"`` (no search).
        search: a one-shot job's search trial.
        candidates: a black-box job's candidate trials (none: its one draw needs no trial).
        max_concurrent: a black-box job's limit on its own candidates running or waiting at once.
        retrains: the job's retrain trials (one per learning rate where a job retrains several times).
    """

    name: str
    kind: str
    search: float = 0.0
    candidates: tuple[float, ...] = ()
    max_concurrent: int = 1
    retrains: tuple[float, ...] = (0.0,)


@dataclass(frozen=True)
class Trial:
    """A trial the simulation ran."""

    job: str
    kind: str
    index: int
    start: float
    end: float


@dataclass
class Schedule:
    """The simulated run: every trial, when the last one ended, and each job's end."""

    slots: int
    trials: list[Trial] = field(default_factory=list)
    job_end: dict[str, float] = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        """Seconds from the first trial's start to the last trial's end."""
        return max((t.end for t in self.trials), default=0.0)

    @property
    def compute(self) -> float:
        """Slot-seconds the trials held."""
        return sum(t.end - t.start for t in self.trials)

    @property
    def occupancy(self) -> float:
        """The share of the slots' time the trials held, from the first start to the last end."""
        return self.compute / (self.slots * self.makespan) if self.makespan else 0.0


@dataclass
class _Job:
    """What the searcher knows of one job while the simulation runs."""

    pipeline: Pipeline
    found: bool = False
    search_suggested: bool = False
    suggested: int = 0       # candidates suggested
    live: int = 0            # candidates suggested and not yet ended (ConcurrencyLimiter's count)
    ended: int = 0           # candidates ended
    retrains_suggested: int = 0
    retrains_ended: int = 0

    @property
    def finished(self) -> bool:
        return self.retrains_ended == len(self.pipeline.retrains)

    def advance(self) -> None:
        """The steps that need no trial (``PlanSearcher._advance``)."""
        p = self.pipeline
        if p.kind in ("manual", "transfer") or (p.kind == "black-box" and self.ended == len(p.candidates)):
            self.found = True

    def next_trial(self, kind: str) -> tuple[int, float] | None:
        """``(index, seconds)`` of a ready ``kind`` trial of this job, or None (``PlanSearcher._trial``)."""
        p = self.pipeline
        if kind == RETRAIN and self.found and self.retrains_suggested < len(p.retrains):
            self.retrains_suggested += 1
            return self.retrains_suggested - 1, p.retrains[self.retrains_suggested - 1]
        if self.found:
            return None
        if kind == SEARCH and p.kind == "one-shot" and not self.search_suggested:
            self.search_suggested = True
            return 0, p.search
        if kind == CANDIDATE and p.kind == "black-box" and self.suggested < len(p.candidates) \
                and self.live < p.max_concurrent:
            self.suggested, self.live = self.suggested + 1, self.live + 1
            return self.suggested - 1, p.candidates[self.suggested - 1]
        return None

    def ended_trial(self, kind: str) -> None:
        if kind == CANDIDATE:
            self.live, self.ended = self.live - 1, self.ended + 1
        elif kind == SEARCH:
            self.found = True
        else:
            self.retrains_ended += 1


def simulate(pipelines: list[Pipeline], slots: int, pending: int | None = None) -> Schedule:
    """Run ``pipelines`` on ``slots`` slots as the run's experiment would (see the module docstring).

    Args:
        pipelines: the jobs, in the plan's order.
        slots: trials that run at once.
        pending: suggested trials that may wait for a slot (default: ``slots``, as the driver sets).

    Returns:
        The :class:`Schedule`; trials start at time 0 at the earliest.
    """
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    jobs = [_Job(p) for p in pipelines]
    pending = slots if pending is None else pending
    waiting: deque[tuple[_Job, str, int, float]] = deque()
    running: list[tuple[float, int, _Job, str, int, float]] = []  # a heap by end time
    schedule, now, order = Schedule(slots), 0.0, 0

    def suggest() -> tuple[_Job, str, int, float] | None:
        unfinished = [j for j in jobs if not j.finished]
        for job in unfinished:
            job.advance()
        for kind in ORDER:
            for job in unfinished:
                trial = job.next_trial(kind)
                if trial is not None:
                    return job, kind, *trial
        return None

    while True:
        progress = True
        while progress:  # Tune's loop: fill the queue of waiting trials, then start what fits
            progress = False
            while len(waiting) < pending and (trial := suggest()) is not None:
                waiting.append(trial)
                progress = True
            while waiting and len(running) < slots:
                job, kind, index, seconds = waiting.popleft()
                heapq.heappush(running, (now + seconds, order, job, kind, index, now))
                order += 1
                progress = True
        if not running:
            break
        now, _, job, kind, index, start = heapq.heappop(running)
        schedule.trials.append(Trial(job.pipeline.name, kind, index, start, now))
        job.ended_trial(kind)
        if job.finished:
            schedule.job_end[job.pipeline.name] = now
    stuck = [j.pipeline.name for j in jobs if not j.finished]
    if stuck:  # a pipeline no trial can advance (a black-box job with no slot for its limit, ...)
        raise RuntimeError(f"the simulation ended with unfinished jobs: {', '.join(stuck)}")
    return schedule
