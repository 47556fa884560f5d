"""What one step costs: timed on the run's backbone and task in a few seconds, or given in a file.

A cost is seconds with where they came from (:class:`Cost`). The keys (``KIND:QUALIFIER``):

* ``data_setup``: a trial's data and tokenizer (the task's splits loaded, the experiment built);
* ``retrain_setup``: a retrain's model (the backbone loaded, the architecture injected);
* ``retrain_step:ARCH``: one training step of the harness on an architecture: ``lora`` (LoRA r=8 on q
  and v, the anchor of :func:`extrapolate`), another manual method's name, ``searched`` (a random
  architecture of the space within the job's budget: a searched job's retrain and every black-box
  candidate), ``transfer`` (a transferred architecture);
* ``search_setup:METHOD`` / ``search_step:METHOD``: a one-shot search's model and supernet, and one
  step of its loop (whatever the method does in a step: BIPEFT's three passes, S3Delta's second-order
  step, PrunePEFT's one pass);
* ``eval_example``: predicting one validation or test example (T5: greedy decoding).

:func:`measure_task` times them: a retrain and each one-shot method's ``search`` run for
``WARMUP + TIMED + 1`` steps on the task's real batches, every batch's draw timed (a step is the time
between two draws of the batch stream that drives the loop; the first step warms up and is left out;
the median of the rest), the set-up until the first draw; the validation of the retrain's last step
gives ``eval_example``. A one-shot method's search step is its first steps' (BIPEFT removes modules
later, which makes its later steps cheaper: its projection leans high).

:func:`load_step_costs` reads given costs: a ``bench/gpu_check.py --out`` JSON (its suite LoRA row is
``retrain_step:lora``, its BIPEFT row ``search_step:bipeft``), or this module's own format (the one
``bench/configs/t5-large-h200.costs.json`` is written in, with the sources of its numbers)::

    {"batch": [SIZE, TOKENS], "device": "...",
     "costs": {"retrain_step:lora": {"seconds": S, "source": "..."},
               "search_step:s3delta": {"times": "search_step:bipeft", "factor": F, "source": "..."}}}

An entry may say ``"over": "train"``: the search step it gives is driven by the whole train split's
batches (PrunePEFT), not the weight-train half's. ``batch`` is the batch size and source length the
steps were timed at; a task of another shape scales them by its tokens per batch
(:meth:`GivenCosts.for_task`). A key ``KIND:QUALIFIER`` missing from a file falls back to ``KIND``
(``retrain_step`` stands for every architecture).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from suite.harness import Experiment
from suite.plan import Plan, UsageError

WARMUP, TIMED = 1, 3  # steps left out, steps timed (a handful: the dry run takes seconds)
ANCHOR = "retrain_step:lora"  # what a given file and this machine both time, to scale one to the other


@dataclass(frozen=True)
class Cost:
    """Seconds, and where they came from (``measured here (cpu)``, ``given: FILE``, ``extrapolated: ...``).
    A search step also says which batches drive its loop (``over``): the weight-train half, or the
    whole train split (PrunePEFT, AdaLoRA), which sets how many steps the search plans."""

    seconds: float
    source: str
    over: str = "weight_train"


class Stopwatch:
    """A loader that notes when each batch is drawn, and is otherwise the loader it wraps: its length and
    every other attribute a training loop may read (the resumable retrain loop reads ``generator``), so
    that timing needs no knowledge of a loop's internals."""

    def __init__(self, batches: Iterable):
        self.batches, self.marks = batches, []

    def __getattr__(self, name: str) -> Any:  # called only for what a Stopwatch does not hold itself
        if name == "batches":  # not set yet (an instance being copied): no endless recursion
            raise AttributeError(name)
        return getattr(self.batches, name)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        for batch in self.batches:
            self.marks.append(time.perf_counter())
            yield batch

    def step_seconds(self) -> float:
        """The median time between two draws, after the warm-up steps (0 with too few draws)."""
        gaps = [b - a for a, b in zip(self.marks[WARMUP:], self.marks[WARMUP + 1:])]
        return statistics.median(gaps) if gaps else 0.0


# ---- given costs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GivenCosts:
    """Costs from a file, at the batch they were timed with."""

    costs: dict[str, Cost]
    batch_size: int
    source_length: int
    path: str

    def get(self, key: str) -> Cost | None:
        return self.costs.get(key) or self.costs.get(key.partition(":")[0])

    def for_task(self, key: str, batch_size: int, source_length: int) -> Cost | None:
        """``key``'s cost for a task with this batch: steps scale by tokens per batch, an example's
        evaluation by its source length, set-ups not at all (padded to the longest: an upper bound)."""
        cost = self.get(key)
        if cost is None:
            return None
        tokens = batch_size * source_length / (self.batch_size * self.source_length)
        scale = {"retrain_step": tokens, "search_step": tokens,
                 "eval_example": source_length / self.source_length}.get(key.partition(":")[0], 1.0)
        if scale == 1.0 or not cost.seconds:
            return cost
        return replace(cost, seconds=cost.seconds * scale,
                       source=f"{cost.source}; x{scale:.2f} for batch {batch_size} x {source_length}")


def load_step_costs(path: str) -> GivenCosts:
    """The costs in ``path`` (see the module docstring); a one-line :class:`UsageError` for a file that
    is missing, not JSON, of neither format, or with a bad entry."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--step-costs {path}: no such file")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--step-costs {path} is not JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return _from_gpu_check(data, path)
    if not (isinstance(data, dict) and isinstance(data.get("costs"), dict) and _is_batch(data.get("batch"))):
        raise UsageError(f"--step-costs {path} is neither a `bench/gpu_check.py --out` JSON (with rows) nor a "
                         'costs file ({"batch": [size, tokens], "costs": {KEY: {"seconds": S, "source": ...}}})')
    raw, costs = data["costs"], {}

    def resolve(key: str, seen: tuple[str, ...] = ()) -> Cost:
        entry = raw[key]
        if key in costs:
            return costs[key]
        if not isinstance(entry, dict) or ("seconds" in entry) == ("times" in entry):
            raise UsageError(f"--step-costs {path}: {key} needs either \"seconds\" or \"times\" and \"factor\"")
        if "seconds" in entry:
            seconds, source = _non_negative(entry["seconds"], key, path), entry.get("source", f"given: {path}")
        else:
            anchor = entry["times"]
            if anchor not in raw or anchor in seen:
                raise UsageError(f"--step-costs {path}: {key} is a multiple of {anchor!r}, which is "
                                 f"{'circular' if anchor in seen else 'not in the file'}")
            base = resolve(anchor, (*seen, key))
            factor = _non_negative(entry.get("factor"), key, path)
            seconds = base.seconds * factor
            source = f"extrapolated: {factor:g} x {anchor}" + (f" ({entry['source']})" if "source" in entry else "")
        over = entry.get("over", "weight_train")
        if over not in ("weight_train", "train"):
            raise UsageError(f"--step-costs {path}: {key}'s \"over\" is weight_train or train, got {over!r}")
        costs[key] = Cost(seconds, source, over)
        return costs[key]

    for key in raw:
        resolve(key)
    size, tokens = data["batch"][:2]
    return GivenCosts(costs, size, tokens, path)


def _is_batch(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(isinstance(v, int) and v > 0 for v in value[:2])


def _non_negative(value: Any, key: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise UsageError(f"--step-costs {path}: {key} needs a number of seconds >= 0, got {value!r}")
    return float(value)


def _from_gpu_check(data: dict[str, Any], path: str) -> GivenCosts:
    """The step times of a ``bench/gpu_check.py --out`` JSON."""
    rows = {row.get("key"): row for row in data["rows"] if isinstance(row, dict)}
    where = f"{data.get('gpu', 'gpu_check')}, {path}"
    costs = {key: Cost(rows[row]["ms_per_step"] / 1000, f"measured by gpu_check ({where})")
             for key, row in (("retrain_step:lora", "suite_lora"), ("search_step:bipeft", "bipeft_search"))
             if isinstance(rows.get(row, {}).get("ms_per_step"), (int, float))}
    if ANCHOR not in costs or not _is_batch(data.get("batch")):
        raise UsageError(f"--step-costs {path}: a gpu_check JSON needs its batch and its suite_lora row's ms_per_step")
    return GivenCosts(costs, data["batch"][0], data["batch"][1], path)


def extrapolate(measured: Cost, anchor_here: Cost, anchor_given: Cost) -> Cost:
    """A cost timed here, carried to the given costs' device by the ratio of the anchor step there
    and here (``retrain_step:lora``)."""
    ratio = anchor_given.seconds / anchor_here.seconds if anchor_here.seconds else 0.0
    return Cost(measured.seconds * ratio, f"extrapolated: {measured.seconds:.4g} s here x {ratio:.3g} "
                                          f"({ANCHOR} given / here)")


# ---- timed here ------------------------------------------------------------------------------------
def measure_task(plan: Plan, task_name: str, keys: list[str], device_label: str, log=print) -> dict[str, Cost]:
    """Time ``keys`` (see the module docstring) on ``plan``'s backbone and ``task_name``'s real batches;
    also ``data_setup``, ``retrain_setup`` (with a retrain step), ``eval_example`` and ``search_setup:M``
    (with a search step)."""
    from spaces import build_space
    from suite.tasks import get_task, load_splits

    task, seed, steps = get_task(task_name), plan.seeds[0], WARMUP + TIMED + 1
    # long enough for the steps whatever the split's size; one validation, after the last timed step
    config = replace(plan.harness, epochs=steps, max_steps=steps, eval_every=steps,
                     max_eval_samples=plan.harness.eval_batch_size)
    here = f"measured here ({device_label})"
    start = time.perf_counter()
    exp = TimedExperiment(task, load_splits(task, seed, plan.data_dir), plan.backbone, seed, config)
    out = {"data_setup": Cost(time.perf_counter() - start, here)}
    space = build_space(plan.space, exp.sites, plan.sizes, backbone_name=plan.backbone)
    budget = next((job.budget_params for job in plan.jobs() if job.budget_params), None)
    for key in keys:
        kind, _, what = key.partition(":")
        if kind == "retrain_step":
            log(f"timing retrain steps ({what}) on {task_name}")
            start = time.perf_counter()
            result = exp.retrain(_architecture(plan, what, space, budget, exp.sites), test=False,
                                 op_options=_op_options(plan, what))
            watch = exp.watches.pop()
            out[key] = Cost(watch.step_seconds(), here)
            out.setdefault("retrain_setup", Cost(watch.marks[0] - start, here))
            out.setdefault("eval_example", Cost(result.eval_time_s / len(exp.splits.validation), here))
        elif kind == "search_step":
            log(f"timing {what} search steps on {task_name}")
            ctx = exp.search_context(space, budget, op_options=_op_options(plan, what))  # Stopwatch loaders
            start = time.perf_counter()
            plan.method(what).search(replace(ctx, total_steps=steps, train_steps=steps))
            over = max(("weight_train", "train"), key=lambda name: len(getattr(ctx, name).marks))
            marks = getattr(ctx, over).marks  # none: the whole space fits the budget, nothing was searched
            out[key] = Cost(getattr(ctx, over).step_seconds(), here, over)
            out[f"search_setup:{what}"] = Cost((marks[0] if marks else time.perf_counter()) - start, here)
    return out


def _op_options(plan: Plan, method: str) -> dict:
    """The op settings a trial of ``method`` builds its ops with (the run's retrain recipe)."""
    from suite.recipe import op_options

    return op_options(plan.retrain_recipe, plan.method(method) if method in plan.methods else None)


class TimedExperiment(Experiment):
    """An :class:`~suite.harness.Experiment` whose training loaders are :class:`Stopwatch` es."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.watches: list[Stopwatch] = []

    def loader(self, examples, train: bool, seed_offset: int = 0):
        batches = super().loader(examples, train, seed_offset)
        if not train:
            return batches
        self.watches.append(Stopwatch(batches))
        return self.watches[-1]


def _architecture(plan: Plan, what: str, space, budget: int | None, sites):
    """The architecture whose retrain step ``retrain_step:WHAT`` times."""
    from spaces.architecture import Architecture

    if what == "searched":
        return space.sample(plan.seeds[0], budget)
    if what == "transfer":
        return Architecture.from_dict(plan.transfer["architecture"])
    from methods import get_method

    return get_method(what).architecture(sites, plan.backbone)
