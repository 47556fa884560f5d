"""A run's trials as lengths in seconds: what each costs a step, times the steps the harness plans.

:func:`pipelines` turns each job of a plan into a :class:`~suite.simulate.Pipeline` from its tasks'
split sizes and step costs (:mod:`suite.stepcosts`). What a trial's length is made of:

* a retrain: the data and model set-up, the harness's planned steps (its epochs over the train split,
  capped by ``--max-steps``), a validation every ``eval_every`` steps and the test split's predictions;
* a black-box candidate: the same at its method's proxy fidelity, without the test split;
* a one-shot search: its set-up (the supernet), its steps (the planned steps over the batches that
  drive its loop; a method with ``min_steps`` above 1, BIPEFT, stops there: the steps its Z triggers
  need), and the validations of a method whose config has ``eval_every`` (S3Delta: once per epoch);
* every trial, Ray Tune's time between two trials on a slot (:data:`TRIAL_GAP_S`); the run, its
  start-up and end (:data:`RUN_START_S`, :data:`RUN_END_S`), added by the caller.

Not in the projection: the driver's own time per black-box suggestion (AutoPEFT fits its surrogate
for each, serially in the driver), BIPEFT's later, cheaper steps (its projection leans high), and
candidates that end early (a multi-fidelity scheduler would shorten their ``Pipeline`` entries).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from suite.plan import Job, Plan
from suite.simulate import Pipeline
from suite.stepcosts import Cost

# Measured on this project's 2-core machine with tiny models (`python -m suite run --methods
# lora,bitfit,lnfit,adapter --backbone tiny-bert ...`, see README "How long will it take"): from the
# command's start to the first trial's first step (imports, Ray's start, the trial processes' imports),
# from the last trial's end to the command's end (tables, plots), and between two trials on one slot.
RUN_START_S = 20.0
RUN_END_S = 6.0
TRIAL_GAP_S = 0.3


def retrain_trials(plan: Plan, job: Job) -> int:
    """How many retrain trials ``job`` runs (one; a learning-rate grid would make it one per rate)."""
    return 1


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


# ---- trial lengths ---------------------------------------------------------------------------------
def evaluations(total: int, every: int) -> int:
    """Validations of a loop of ``total`` steps that validates every ``every`` steps and at its last."""
    return 0 if every <= 0 else total // every + (1 if total % every else 0)


def training_seconds(cfg, task, sizes: dict[str, int], step: float, eval_example: float, test: bool) -> float:
    """A harness training of ``cfg`` (a retrain, or a candidate at its fidelity): steps, validations, test."""
    per_epoch = cfg.steps_per_epoch(cfg.train_size(sizes["train"]), task)
    total = cfg.planned_steps(per_epoch, cfg.retrain_epochs(task))
    every = min(cfg.eval_every or task.eval_every or per_epoch, total)
    evaluated = evaluations(total, every) * capped(sizes["validation"], cfg) + (capped(sizes["test"], cfg) if test else 0)
    return total * step + evaluated * eval_example


def capped(n: int, cfg) -> int:
    """Examples of a validation or test split of ``n`` that the harness evaluates."""
    return n if cfg.max_eval_samples is None else min(n, cfg.max_eval_samples)


def search_steps(plan: Plan, job: Job, sizes: dict[str, int], over: str) -> tuple[int, int, int]:
    """``(expected steps, planned steps, steps per epoch of the weight-train half)`` of a one-shot search
    whose loop is driven by the ``over`` batches (see the module docstring)."""
    from suite.data import weight_half_size
    from suite.tasks import get_task

    cfg, task, n = plan.harness, get_task(job.task), plan.harness.train_size(sizes["train"])
    half = cfg.steps_per_epoch(weight_half_size(n), task)
    planned = cfg.planned_steps(half if over == "weight_train" else cfg.steps_per_epoch(n, task), cfg.search_epochs(task))
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
        fields: dict[str, Any] = {"retrains": (retrain,) * retrain_trials(plan, job)}
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
