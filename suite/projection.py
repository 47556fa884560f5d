"""How long a run takes on N slots: each trial's length, and the run's one experiment simulated.

**A trial's length** is what one step costs (:mod:`suite.stepcosts`) times the steps the harness
plans; :func:`pipelines` turns each job of a plan into a :class:`Pipeline` of trial lengths:

* a retrain: the data and model set-up, the harness's planned steps (its epochs over the train split,
  capped by ``--max-steps``), a validation every ``eval_every`` steps and the test split's predictions;
  a job retrains once per learning rate of ``Plan.retrain_lrs`` (``--lr-grid``: one trial per rate);
* a black-box candidate: the same at its method's proxy fidelity, without the test split;
* a one-shot search: its set-up (the supernet), its steps (the planned steps over the batches that
  drive its loop; a method with ``min_steps`` above 1, BIPEFT, stops there: the steps its Z triggers
  need), and the validations of a method whose config has ``eval_every`` (S3Delta: once per epoch);
* every trial, Ray Tune's time between two trials on a slot (:data:`TRIAL_GAP_S`); the run, its
  start-up and end (:data:`RUN_START_S`, :data:`RUN_END_S`), added by the caller.

Not in the projection: the driver's own time per black-box suggestion (AutoPEFT fits its surrogate
for each, serially in the driver), BIPEFT's later, cheaper steps (its projection leans high), and
candidates that a job's ASHA stops early (``scheduler=asha``, :mod:`suite.rungs`): each is projected at
its whole proxy, so such a job's projection leans high.

**The schedule**: :func:`simulate` is a discrete-event simulation that replays what
:class:`suite.schedule.PlanSearcher` and Ray Tune do with trials of known length:

* the searcher hands out the first ready work, in the order of :data:`suite.trials.ORDER`: a
  black-box candidate of any job under its own method's concurrency limit (in the plan's job order),
  then a one-shot search, then a retrain of a job whose architecture is known; a manual job's
  architecture is known at once, a black-box job's once all its candidates have ended, a one-shot
  job's once its search has ended;
* Ray Tune asks the searcher for trials while fewer than ``pending`` suggested trials wait for a slot
  (the driver sets ``TUNE_MAX_PENDING_TRIALS_PG`` to the slots), and starts waiting trials first in,
  first out, as slots free. A suggestion may so wait while later work becomes ready, as in a real run.

It returns the :class:`Schedule`: when the last trial ends, the compute, each trial's start and end.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from suite.plan import Job, Plan, planned_search_steps
from suite.stepcosts import Cost
from suite.trials import CANDIDATE, ORDER, RETRAIN, SEARCH  # not from suite.schedule, which imports Ray


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


# ---- trial lengths ---------------------------------------------------------------------------------
# A run's fixed costs: from the command's start to the first trial's work (imports, Ray's start, the
# trial processes' imports), from the last trial's end to the command's end (tables, plots), and
# between two trials on one slot. The first two measured by `python bench/dryrun_accuracy.py` on this
# project's 2-core machine (2026-12-04): 13.6 s before the first trial's start and 4.6 s after the
# last one's end on the offline default (MiniLM, 2 slots), 8.5 s and 4.8 s on the local-cluster sweep;
# plus the first trial's own imports of torch, transformers and the suite (2.2 s, warm file cache).
# The gap between trials is an estimate, not measured.
RUN_START_S = 16.0
RUN_END_S = 5.0
TRIAL_GAP_S = 0.3


def arch_key(job: Job) -> str:
    """The ``retrain_step`` key of a job's architecture (:mod:`suite.stepcosts`)."""
    return {"manual": job.method, "transfer": "transfer"}.get(job.kind, "searched")


def needed_keys(plan: Plan) -> list[str]:
    """The step costs a projection of ``plan`` needs (set-ups and evaluation come with them)."""
    keys = {f"retrain_step:{arch_key(job)}" for job in plan.jobs()}
    keys |= {f"search_step:{job.method}" for job in plan.jobs() if job.kind == "one-shot"}
    return sorted(keys)


def all_keys(plan: Plan) -> list[str]:
    """Every cost a projection of ``plan`` reads: :func:`needed_keys`, their set-ups and the evaluation."""
    keys = needed_keys(plan)
    searches = [f"search_setup:{k.partition(':')[2]}" for k in keys if k.startswith("search_step:")]
    return [*keys, *searches, "data_setup", "retrain_setup", "eval_example"]


def evaluations(total: int, every: int) -> int:
    """Validations of a loop of ``total`` steps that validates every ``every`` steps and at its last."""
    return 0 if every <= 0 else total // every + (1 if total % every else 0)


def training_steps(cfg, task, n_train: int) -> tuple[int, int]:
    """``(steps per epoch, planned steps)`` of a harness training of ``cfg`` (a retrain, or a candidate at
    its fidelity) on ``task`` with ``n_train`` training examples (before the harness subsamples them)."""
    per_epoch = cfg.steps_per_epoch(cfg.train_size(n_train), task)
    return per_epoch, cfg.planned_steps(per_epoch, cfg.retrain_epochs(task))


def training_seconds(cfg, task, sizes: dict[str, int], step: float, eval_example: float, test: bool) -> float:
    """A harness training of ``cfg`` (a retrain, or a candidate at its fidelity): steps, validations, test."""
    per_epoch, total = training_steps(cfg, task, sizes["train"])
    every = min(cfg.eval_every or task.eval_every or per_epoch, total)
    evaluated = evaluations(total, every) * capped(sizes["validation"], cfg) + (capped(sizes["test"], cfg) if test else 0)
    return total * step + evaluated * eval_example


def capped(n: int, cfg) -> int:
    """Examples of a validation or test split of ``n`` that the harness evaluates."""
    return n if cfg.max_eval_samples is None else min(n, cfg.max_eval_samples)


def search_steps(plan: Plan, job: Job, sizes: dict[str, int], over: str) -> tuple[int, int, int]:
    """``(expected steps, planned steps, steps per epoch of the weight-train half)`` of a one-shot search
    whose loop is driven by the ``over`` batches (see the module docstring)."""
    half, planned = planned_search_steps(plan, job.task, sizes["train"], over)
    need = plan.method(job.method).min_steps(half)
    return (min(planned, need) if need > 1 else planned), planned, half


def search_seconds(plan: Plan, job: Job, sizes: dict[str, int], costs: dict[str, Cost]) -> float:
    """A one-shot search trial: set-ups, expected steps, and the validations of a method whose config has
    ``eval_every`` (None: once per epoch of the weight-train half; 0: never)."""
    step = costs[f"search_step:{job.method}"]
    steps, _, half = search_steps(plan, job, sizes, step.over)
    every = getattr(plan.method(job.method).config, "eval_every", 0)
    validations = evaluations(steps, half if every is None else every) * capped(sizes["validation"], plan.harness)
    return (costs["data_setup"].seconds + costs[f"search_setup:{job.method}"].seconds + steps * step.seconds
            + validations * costs["eval_example"].seconds)


def pipelines(plan: Plan, sizes: dict[str, dict[str, int]], costs: dict[str, dict[str, Cost]]) -> list[Pipeline]:
    """Each job of ``plan`` as the lengths of its trials (each with Ray Tune's gap between trials)."""
    from suite.tasks import get_task

    out = []
    for job in plan.jobs():
        c, task, size = costs[job.task], get_task(job.task), sizes[job.task]
        setup = c["data_setup"].seconds + c["retrain_setup"].seconds + TRIAL_GAP_S
        retrain = setup + training_seconds(plan.harness, task, size, c[f"retrain_step:{arch_key(job)}"].seconds,
                                           c["eval_example"].seconds, test=True)
        fields: dict[str, Any] = {"retrains": (retrain,) * len(plan.retrain_lrs())}  # --lr-grid: one per rate
        if job.kind == "one-shot":
            fields["search"] = search_seconds(plan, job, size, c) + TRIAL_GAP_S
        elif job.kind == "black-box":
            method = plan.method(job.method)
            n = method.num_candidates()
            if n > 1:
                proxy = dataclasses.replace(plan.harness, **method.fidelity())
                one = setup + training_seconds(proxy, task, size, c["retrain_step:searched"].seconds,
                                               c["eval_example"].seconds, test=False)
                fields.update(candidates=(one,) * n, max_concurrent=method.max_concurrent())
        out.append(Pipeline(job.run_id, job.kind, **fields))
    return out
