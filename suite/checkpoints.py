"""Mid-trial checkpoints of a retrain: what one holds, when one is due, and where it goes (Ray Tune).

A retrain trial saves its loop's whole state every ``--checkpoint-every`` (:attr:`HarnessConfig.
checkpoint_every <suite.harness.HarnessConfig.checkpoint_every>`: a number of steps or a time), as the
trial's Ray Tune checkpoint; Ray keeps the latest two (``CheckpointConfig(num_to_keep=2)`` in
:mod:`suite.driver`). A trial that starts again (``--resume`` after Ctrl+C or ``kill -9`` of the
driver, a retry after a lost node or a crash) reads it back with ``tune.get_checkpoint()`` and goes on
from there, bit for bit as if it had never stopped (on the same device and thread count): the
trainable weights, the optimizer and schedule (:meth:`core.training.Trainer.state_dict`), the step,
the best validation state so far, the history, the torch RNG (dropout) and the training loader's
place in its shuffled pass are all in it (:class:`LoopState`).

A mid-trial checkpoint holds one file, :data:`STATE_FILE`; the trial's final checkpoint holds the
weights and predictions the driver files beside the record (:data:`suite.rundir.CHECKPOINT_FILES`)
and no loop state, so a trial that finds only a final checkpoint starts again from step 0.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from core.training import Trainer

STATE_FILE = "train_state.pt"
DEFAULT_EVERY = "10m"
_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Interval:
    """How often a retrain checkpoints: every ``steps`` steps, or every ``seconds`` (None and None: never)."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> Interval:
        """``"500"``: every 500 steps; ``"90s"``, ``"10m"``, ``"1.5h"``: every so long; ``"off"``: never.
        Anything else is a ``ValueError`` that names the value and the valid forms."""
        value = str(text).strip().lower()
        if value == "off":
            return cls()
        if value.isdigit() and int(value) > 0:
            return cls(steps=int(value))
        timed = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", value)
        if timed and float(timed[1]) > 0:
            return cls(seconds=float(timed[1]) * _UNITS[timed[2]])
        raise ValueError(f"checkpoint_every must be a number of steps (500), a time (90s, 10m, 1.5h) or off, "
                         f"got {text!r}")

    def due(self, step: int, seconds_since_last: float) -> bool:
        """Whether a checkpoint is due after ``step`` steps, ``seconds_since_last`` after the last one."""
        if self.steps is not None:
            return step % self.steps == 0
        return self.seconds is not None and seconds_since_last >= self.seconds


class CheckpointStore(Protocol):
    """Where a retrain's loop states go and come back from (:class:`TuneCheckpoints` in a trial)."""

    def latest(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any], row: dict[str, Any]) -> None: ...


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class LoopState:
    """Where a retrain's loop is, beyond its model and :class:`~core.training.Trainer`.

    Attributes:
        step: updates done.
        best_score, best_step, best_state, best_val: the best validation checkpoint so far (its
            selection metric, step, trainable weights and metrics).
        history: one row per validation so far; losses: the training losses since the last one.
        eval_time: seconds spent validating; train_time: seconds the earlier attempts trained.
        examples, tokens: the examples trained on and their non-padding input tokens.
        epoch_rng: the training loader's generator as its current pass began; taken: the batches of
            that pass trained on.
        resumed_at: the steps this retrain continued from a checkpoint at (empty: never stopped).
    """

    step: int = 0
    best_score: float = -math.inf
    best_step: int = 0
    best_state: list[torch.Tensor] | None = None
    best_val: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    eval_time: float = 0.0
    train_time: float = 0.0
    examples: int = 0
    tokens: int = 0
    epoch_rng: torch.Tensor | None = None
    taken: int = 0
    resumed_at: list[int] = field(default_factory=list)

    def took(self, batch: dict[str, Any], loss: float) -> None:
        """Count one step on ``batch`` (its loss, examples and non-padding input tokens)."""
        self.step += 1
        self.losses.append(loss)
        self.examples += len(batch["index"])
        self.tokens += int(batch["attention_mask"].sum())  # on the CPU copy: no device sync

    def batches(self, loader) -> Iterator[Any]:
        """The loader's batches from here on, pass after pass. A resumed pass sets the loader's
        generator back to where the pass began and draws its order again, skipping (collated, not
        trained on) the batches already taken: the batches are those an unbroken run trains on."""
        generator = loader.generator
        while True:
            if generator is not None and self.epoch_rng is None:
                self.epoch_rng = generator.get_state()
            elif generator is not None:
                generator.set_state(self.epoch_rng)
            skip, self.taken = self.taken, 0
            for i, batch in enumerate(loader):
                self.taken = i + 1
                if i >= skip:
                    yield batch
            self.epoch_rng, self.taken = None, 0

    def capture(self, params: dict[str, nn.Parameter], trainer: Trainer, device: torch.device,
                seconds: float) -> dict[str, Any]:
        """Everything a resumed loop needs (``seconds``: how long this attempt has trained so far)."""
        loop = {f.name: getattr(self, f.name) for f in fields(self)}
        loop["train_time"] = self.train_time + seconds
        return {"loop": loop, "params": {name: p.detach() for name, p in params.items()},
                "trainer": trainer.state_dict(), "rng": _rng_state(device)}

    @classmethod
    def restore(cls, saved: dict[str, Any], params: dict[str, nn.Parameter], trainer: Trainer,
                device: torch.device) -> LoopState:
        """The loop :meth:`capture` saved, its weights, optimizer, schedule and RNG put back."""
        if set(saved["params"]) != set(params):
            raise ValueError("the checkpoint is of another architecture: its trainable parameters differ")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved["params"][name])
        trainer.load_state_dict(saved["trainer"])
        _set_rng_state(saved["rng"], device)
        loop = cls(**saved["loop"])
        loop.resumed_at.append(loop.step)
        return loop


class Checkpointer:
    """A retrain loop's checkpoints in ``store`` (None: none): the state to start from, and a save
    of the loop, the parameters ``params`` and ``trainer`` whenever one is due (``every``)."""

    def __init__(self, store: CheckpointStore | None, every: str, params: dict[str, nn.Parameter],
                 trainer: Trainer, device: torch.device):
        self.store, self.interval = store, Interval.parse(every)
        self.params, self.trainer, self.device = params, trainer, device
        self.last = time.perf_counter()

    def start(self) -> LoopState:
        """The store's latest loop, restored, or a new one."""
        saved = self.store.latest() if self.store else None
        loop = LoopState.restore(saved, self.params, self.trainer, self.device) if saved else LoopState()
        self.last = time.perf_counter()
        return loop

    def after_step(self, loop: LoopState, total: int, phase: str, started: float) -> None:
        """Save ``loop`` if a save is due and it has not reached ``total`` steps (the trial's last
        report holds what it ends in); ``started``: when this attempt began training
        (``time.perf_counter()``). Without a store it returns at once: called every step."""
        if self.store is None or loop.step >= total:
            return
        now = time.perf_counter()
        if self.interval.due(loop.step, now - self.last):
            state = loop.capture(self.params, self.trainer, self.device, now - started)
            self.store.save(state, {"step": loop.step, "total": total, "phase": phase})
            self.last = time.perf_counter()


class TuneCheckpoints:
    """A retrain trial's mid-trial checkpoints as its Ray Tune checkpoints (one :data:`STATE_FILE`)."""

    def latest(self) -> dict[str, Any] | None:
        """The loop state of the trial's latest checkpoint; None when it has none, or only its final one."""
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            path = Path(folder) / STATE_FILE
            return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None

    def save(self, state: dict[str, Any], row: dict[str, Any]) -> None:
        """Report ``row`` with ``state`` as the trial's checkpoint (Ray copies it to the run's storage)."""
        from ray import tune

        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / STATE_FILE)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))
