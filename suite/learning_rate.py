"""The learning-rate protocol of a run: what each retrain trains at, and how a grid picks one.

* ``--lr`` (default :data:`DEFAULT_LR`, 3e-4: BIPEFT App. B, "a consistent learning rate of 3e-4 for
  PEFT training", and S3Delta's scripts; ``HarnessConfig.lr``'s default) is the run's one learning rate:
  every search trains at it (one-shot supernets' weights, black-box proxies), and without a grid every
  architecture is retrained at it, whichever method found it.
* **Full fine-tuning** (an architecture that trains every backbone parameter,
  ``Architecture.full_finetune``: the ``full`` baseline) without ``--lr`` is retrained at its own
  default, :data:`FULL_FINETUNE_LR` of the backbone's family (BERT-like 2e-5): it moves every pretrained
  weight, and 3e-4 is far from any rate published for that. BIPEFT's and S3Delta's papers report full
  fine-tuning without its learning rate (see ``reference/methods.md``, ``bipeft-paper.md``), so the
  defaults come from the backbones' own papers and model documentation (cited beside each). It is an
  explicit setting of an architecture kind, not of a method: its rows are labelled ``lr 2e-5`` (the
  tables), and the plan stores the resolved value (``Plan.full_lr``). An explicit ``--lr`` is every
  architecture's, full fine-tuning's too: the user chose one rate for the run.
* ``--lr-grid 1e-4,3e-4,1e-3``: every architecture, full fine-tuning and manual baselines included, is
  retrained once per learning rate (separate Ray trials, the same seed and data); the best validation
  score (the task's selection metric; a tie goes to the smaller rate) picks the one whose test score the
  record holds and the tables report. The record keeps every rate's validation metrics and best step
  (``retrain.lr_grid``) but only the chosen rate's test score: a reader (or a script) never sees the
  others' test scores, so nothing can be picked on the test split; the others' weights and predictions
  are deleted once the record is written (Ray Tune's own trial results under ``ray/`` still hold them).
  Searches and black-box proxies still train at ``--lr`` (which may be given with a grid): the grid is
  for the final retrain, as a grid per candidate would multiply a search's cost by its size and depart
  from every method's paper.

A grid's finished trials are kept in ``lr_trials/<run_id>/lr<rate>/`` (:class:`LrTrials`: the result,
weights and predictions) until every rate of the job has ended, so a resumed run redoes none of them.
``Plan.retrain_lrs`` says at which rates an architecture is retrained; :func:`protocol` names a record's protocol (``table`` over several runs
refuses to mix two).
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.plan import UsageError
from suite.rundir import CHECKPOINT_FILES, LR_TRIALS, RunDir, read_json, write_json_atomic, writing

if TYPE_CHECKING:
    from suite.outcomes import RetrainResult

DEFAULT_LR = 3e-4
# Full fine-tuning's learning rate by backbone family, for AdamW with a linear decay (the harness's):
FULL_FINETUNE_LR = {
    "bert": 2e-5,   # BERT (Devlin et al., 2019, App. A.3: 5e-5, 3e-5, 2e-5); RoBERTa (Liu et al., 2019, Table 10: 1e-5..3e-5)
    "t5": 1e-4,     # Hugging Face's T5 notes for AdamW, "1e-4 and 3e-4 work well" (transformers PR #13240), the
                    # lower for T5-large's every weight; T5's own 1e-3 (Raffel et al., 2020) is with Adafactor
    "llama": 2e-5,  # Stanford Alpaca's full fine-tuning of LLaMA-7B (its README's hyperparameters)
}
RESULT = "result.json"  # a grid trial's RetrainResult, written last: a folder without it did not finish


LR_HELP = ("the run's one learning rate: every search and every retrain, full fine-tuning's too (default 3e-4, "
           "and full fine-tuning its backbone family's own, e.g. 2e-5 on BERT-like, labelled)")
LR_GRID_HELP = ("comma-separated learning rates, e.g. 1e-4,3e-4,1e-3: every architecture (full fine-tuning too) "
                "retrained at each, the best validation score picks; searches stay at --lr")
def lr_text(lr: float) -> str:
    """``3e-4``: how a learning rate is printed (tables, trial names, folder names)."""
    import numpy as np

    return np.format_float_scientific(lr, trim="-", exp_digits=1)


def parse_lr(option: str, text: str) -> float:
    """A learning rate given to ``--option``: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--{option} takes a learning rate, a number in (0, 1) such as 3e-4, got {text!r}") from None
    if not 0 < value < 1:
        raise UsageError(f"--{option} must be a learning rate in (0, 1) such as 3e-4, got {text}")
    return value


def parse_lr_grid(text: str) -> tuple[float, ...]:
    """``--lr-grid 1e-4,3e-4,1e-3``: two or more learning rates, each once, smallest first."""
    from suite.inputs import split_list, unique

    items = split_list(text)
    if len({lr_text(parse_lr("lr-grid", item)) for item in items}) < 2:
        raise UsageError(f"--lr-grid takes two or more learning rates (e.g. 1e-4,3e-4,1e-3), got {text!r}; "
                         "for one, give --lr")
    return tuple(sorted(float(item) for item in unique("lr-grid", items, key=lambda item: lr_text(float(item)))))


def lr_fields(args: Any, family: str, full: bool) -> dict[str, Any]:
    """The plan's ``lr_grid`` and ``full_lr`` from ``--lr-grid`` and ``--lr``, checked. ``full``: whether
    an architecture of the run trains every backbone parameter; ``family``: the backbone's."""
    grid = parse_lr_grid(args.lr_grid) if getattr(args, "lr_grid", None) is not None else ()
    own = full and not grid and getattr(args, "lr", None) is None  # an explicit --lr is full fine-tuning's too
    return {"lr_grid": grid, "full_lr": FULL_FINETUNE_LR[family] if own else None}


def trial_lr(spec: dict[str, Any]) -> float:
    """The learning rate a retrain trial's spec (``Plan.trial_spec``) trains at."""
    return spec["harness"].get("lr", DEFAULT_LR)


def protocol(record: dict[str, Any]) -> str:
    """How an ok record's retrain chose its learning rate: ``lr 2e-5`` (one rate; a record from before
    ``retrain.lr`` trained at its harness's) or ``lr grid {1e-4, 1e-3} by validation``."""
    retrain, harness = record.get("retrain") or {}, record.get("harness") or {}
    if "lr_grid" in retrain:
        return f"lr grid {{{', '.join(map(lr_text, retrain['lr_grid']['values']))}}} by validation"
    return f"lr {lr_text(retrain.get('lr') or harness.get('lr', DEFAULT_LR))}"


# ---- a grid's trials ------------------------------------------------------------------------------
class LrTrials:
    """The ended retrain trials of one job's grid, in the run folder until its record is written."""

    def __init__(self, run: RunDir, run_id: str):
        self.folder = run.root / LR_TRIALS / run_id

    def of(self, lr: float) -> Path:
        """The folder of one learning rate's trial (its result, weights and predictions)."""
        return self.folder / f"lr{lr_text(lr)}"

    def load(self) -> dict[float, RetrainResult]:
        """Every finished trial's result, by its learning rate."""
        from suite.outcomes import RetrainResult

        kept = [read_json(path, "a retrain's result") for path in sorted(self.folder.glob(f"lr*/{RESULT}"))]
        return {k["lr"]: RetrainResult.from_dict(k["retrain"]) for k in kept}

    def save(self, retrain: RetrainResult, lr: float, checkpoint: Path | None) -> None:
        """Keep a finished trial at ``lr``: its checkpoint's files, then its result."""
        folder = self.of(lr)
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
            for name in CHECKPOINT_FILES.values():
                if checkpoint is not None and (Path(checkpoint) / name).is_file():
                    shutil.copyfile(Path(checkpoint) / name, folder / name)
        write_json_atomic(folder / RESULT, {"lr": lr, "retrain": retrain.to_dict()})

    def drop(self) -> None:
        """Delete the job's trials (its record is written) and, once empty, ``lr_trials/`` itself."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()


def pick(results: dict[float, RetrainResult], selection: str) -> float:
    """The learning rate with the best validation ``selection`` score; a tie (or no score) goes to the
    smaller rate."""
    def score(lr: float) -> float:
        value = results[lr].validation.get(selection, math.nan)
        return -math.inf if math.isnan(value) else value

    return max(sorted(results), key=score)  # max keeps the first of equal scores: the smallest rate


def grid_record(results: dict[float, RetrainResult], chosen: float, selection: str) -> dict[str, Any]:
    """The record's ``retrain.lr_grid``: every rate's validation metrics, none of their test scores."""
    return {"values": sorted(results), "chosen": chosen, "by": f"validation {selection}",
            "trials": [{"lr": lr, "validation": r.validation, "best_step": r.best_step,
                        "train_time_s": r.train_time_s, "attempts": r.attempts} for lr, r in sorted(results.items())]}
