"""The one training step of the suite, used by the retrain harness and by every search.

* :func:`resolve_precision` and :func:`autocast_context`: the mixed-precision policy. ``auto`` is
  bf16 autocast where the device has a fast bf16 path (:func:`fast_bf16`: a CUDA device with bf16
  support; a CPU whose ``avx512_bf16`` or AMX tiles torch detects), fp32 elsewhere. Under bf16 only
  what autocast casts runs in bf16 (the backbone's matmuls); master weights, gradients, optimizer
  state, the loss and every statistic a search reads stay fp32 (the statistics are fp32 reductions
  of fp32 gradients; ``bench/precision_statistics.py`` measures how far bf16 matmuls move them). The
  harness's evaluation and the searches' passes enter the same context.
* :func:`cache_frozen_casts`: under bf16, a frozen ``nn.Linear`` keeps the bf16 copy of its weight and
  bias that autocast would otherwise make again at every call (the same bits, once).
* :func:`finite_loss`: a loss's value, read once; a non-finite loss is an error, not a silent NaN run.
* :class:`Trainer`: AdamW with linear decay over the planned steps (paper App. B), gradient-norm
  clipping, the forward pass under autocast and the non-finite-loss guard.

The order of one update is fixed here (forward, guard, ``zero_grad``, backward, the ``on_grads``
hook, clip, optimizer step, schedule step): the retrain and the searches' weight steps train the
same way, and precision or speed work changes this one module.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from core.schedules import linear_decay

AutocastFactory = Callable[[], contextlib.AbstractContextManager]
PRECISIONS = ("auto", "bf16", "fp32")


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` has a fast bf16 matmul path, as torch detects it (never guessed from a
    name): a CUDA device with bf16 support (Ampere and later), or a CPU with ``avx512_bf16`` or
    AMX tiles (recent Intel Xeons, AMD Zen 4 and later)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"``: ``auto`` is bf16 where :func:`fast_bf16` says so, fp32 elsewhere;
    ``bf16`` and ``fp32`` are taken as asked. Raises ``ValueError`` for any other name."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when the resolved ``precision`` is ``"bf16"``; no autocast (fp32) otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class FrozenCastLinear(nn.Linear):
    """An ``nn.Linear`` whose frozen weight and bias, under autocast, are cast to autocast's dtype once
    and kept (until they change in place), where plain autocast casts them again at every call: it
    caches only parameters that require a gradient. The product is the one autocast computes (the
    cached copy is the cast it would make); the fp32 parameters stay what the module holds, so an
    op that reads its host's weight (DoRA) and full fine-tuning (which trains them: no cache) see
    them as before."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        frozen = not self.weight.requires_grad and (self.bias is None or not self.bias.requires_grad)
        if not frozen or not torch.is_autocast_enabled(device):
            return super().forward(x)
        dtype = torch.get_autocast_dtype(device)
        key = (dtype, self.weight.data_ptr(), self.weight._version,
               None if self.bias is None else (self.bias.data_ptr(), self.bias._version))
        cached = getattr(self, "_frozen_cast", None)
        if cached is None or cached[0] != key:
            bias = None if self.bias is None else self.bias.detach().to(dtype)
            cached = self._frozen_cast = (key, self.weight.detach().to(dtype), bias)
        return torch.nn.functional.linear(x, cached[1], cached[2])


def cache_frozen_casts(model: nn.Module) -> nn.Module:
    """Make every plain ``nn.Linear`` of ``model`` a :class:`FrozenCastLinear` (in place; subclasses of
    ``nn.Linear`` are left as they are). Worth it under bf16 autocast only: a search's three passes
    and every retrain step otherwise cast each frozen backbone weight anew."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = FrozenCastLinear
    return model


def finite_loss(loss: torch.Tensor, what: str, step: int | None = None) -> float:
    """The value of ``loss`` (one sync); raises ``FloatingPointError`` naming ``what`` (and the
    step) when it is NaN or infinite."""
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite {what} loss {value}" + (f" at step {step}" if step is not None else ""))
    return value


class Trainer:
    """AdamW + linear decay over ``total_steps`` on the parameters that require a gradient.

    Args:
        params: the parameters to train (those without ``requires_grad`` are left out).
        lr: the AdamW learning rate at step 0 (it decays linearly to 0 at ``total_steps``).
        total_steps: the length of the linear decay.
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: gradient-norm clipping over ``params`` (0: off).
        autocast: a factory of the context the forward pass runs in (:func:`autocast_context`).
        what: how a non-finite loss is named in the error (``"training"``, ``"search"``).

    Attributes:
        params, optimizer, schedule: as built; a method may read the optimizer's state (S3Delta's
            virtual step) or reorder it with the weights (PrunePEFT).
        steps: updates done so far.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, total_steps: int, weight_decay: float = 0.0,
                 grad_clip: float = 1.0, autocast: AutocastFactory = contextlib.nullcontext, what: str = "training"):
        self.params = [p for p in params if p.requires_grad]
        self.grad_clip, self.autocast, self.what = grad_clip, autocast, what
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.schedule = linear_decay(self.optimizer, total_steps)
        self.steps = 0

    def step(self, forward: Callable[[], torch.Tensor], on_grads: Callable[[], None] | None = None) -> float:
        """One update on the loss ``forward()`` builds (under autocast); returns the loss's value.

        The value is read before the backward pass (the step's one sync, rather than a wait for the
        update after it). ``on_grads``, if given, is called after the backward pass and before
        clipping and the update: a method reads the raw gradients there (BIPEFT's sensitivities,
        PrunePEFT's Taylor scores) without a second backward pass.
        """
        with self.autocast():
            loss = forward()
        value = finite_loss(loss, self.what, self.steps)
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:  # False when a search gated every kept module off (and there is no head)
            loss.backward()
        if on_grads is not None:
            on_grads()
        self.update()
        return value

    def update(self) -> None:
        """Clip the gradients the parameters hold, step the optimizer, then the schedule (for a
        caller that computed the gradients itself, e.g. S3Delta's architecture gradient)."""
        live = [p for p in self.params if p.grad is not None]
        if self.grad_clip and live:
            torch.nn.utils.clip_grad_norm_(live, self.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        self.steps += 1

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        """The optimizer's and the schedule's state and the step count (what a checkpoint keeps)."""
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Continue from what :meth:`state_dict` gave (on the same parameters)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.steps = state["steps"]
