"""The common shape of a PEFT op.

Every op is an ``nn.Module`` that computes a *delta* added to its host module's output. It works in
two modes with one class:

* **fixed mode** (no choice set): the op is allocated at its size; only those parameters exist.
  :meth:`Op.sliced` turns a search-mode op into a fixed op of size ``k`` with a copy of the leading
  slice of its weights.
* **search mode**: the op is allocated at its largest size; a candidate size ``k`` uses the leading
  slice (weight entanglement). A method sets a distribution over the candidate sizes with
  :meth:`Op.set_size_probs` (hard one-hot with straight-through gradients, or soft). The mixture
  is computed as ONE max-size product with a per-channel weight vector ``w``, where channel ``j``
  is weighted by the total probability of the candidate sizes ``> j``:
  ``sum_k g_k * f_k = f_max with channels scaled by w`` for ops whose size channels are separable
  (LoRA's rank, an adapter's bottleneck). :meth:`Op.fix_size` pins the op at size ``k`` with no
  mixture (it then slices instead of scaling: fixed dimensions cost only their size).

The binary keep weight and removal are the slot's business (``spaces.inject.Slot``): a removed op
is skipped, so it costs nothing in forward or backward.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from spaces.sites import SiteSpec


class Op(nn.Module):
    """Base class of PEFT ops.

    Subclasses set the class attributes and implement :meth:`count`, :meth:`delta` and, when sized,
    :meth:`_copy_slice`.
    """

    name: ClassVar[str]
    sized: ClassVar[bool] = True
    site_kinds: ClassVar[tuple[str, ...]]
    # "parallel": delta computed from the host's input; "serial": from the host's running output.
    role: ClassVar[str] = "parallel"
    # Ops on one host run by stage: 0 LoRA / DoRA / LNFit / prefix, 1 BitFit, 1.5 IA3's output scale,
    # 2 serial adapters, 3 the parallel adapter, so that ``FFN(x) + SA(FFN(x)) + PA(x)`` comes out as
    # in BIPEFT's S1 and an adapter on a BERT sub-layer sees the adapted, biased (and rescaled)
    # output of the projection it follows.
    stage: ClassVar[float] = 0

    def __init__(self, spec: SiteSpec, size: int | None, candidates: tuple[int, ...] | None = None):
        super().__init__()
        self.check_size(size)
        if spec.kind not in self.site_kinds:
            raise ValueError(
                f"op {self.name!r} cannot go on the {spec.kind} site {spec.site}; "
                f"it goes on {', '.join(self.site_kinds)} sites"
            )
        self.spec = spec
        self.size = size
        candidates = tuple(candidates) if candidates else ((size,) if size else ())
        if self.sized and candidates and max(candidates) > size:
            raise ValueError(f"candidate sizes {candidates} exceed the allocated size {size}")
        self.candidates = candidates
        self.size_probs: torch.Tensor | None = None
        self.active_size = size
        # Set by the slot / supernet: the keep weight (1.0, or a 0-dim tensor carrying gradient to
        # the method's architecture weights), removal, and whether the size has been fixed.
        self.keep: float | torch.Tensor = 1.0
        self.removed = False
        self.size_fixed = False
        # Set by ``attach``: a parallel op of a sub-layer site whose input reaches its host's slot
        # through a pre-hook elsewhere (BERT's FFN), not as the host's own input.
        self.reads_stash = False
        if self.sized and candidates:
            mask = torch.zeros(len(candidates), size)
            for i, c in enumerate(candidates):
                mask[i, :c] = 1.0
            self.register_buffer("_channel_mask", mask, persistent=False)

    # ---- sizes -----------------------------------------------------------------------------------
    @classmethod
    def check_size(cls, size: int | None) -> None:
        if cls.sized:
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"op {cls.name!r} needs a positive integer size, got {size!r}")
        elif size is not None:
            raise ValueError(f"op {cls.name!r} has no size, got size={size!r}; use null")

    @classmethod
    def count(cls, spec: SiteSpec, size: int | None) -> int:
        """Trainable parameters of this op at ``spec`` with ``size`` (analytic)."""
        raise NotImplementedError

    def set_size_probs(self, probs: torch.Tensor | None) -> None:
        """Search mode: a distribution over ``self.candidates`` (shape ``[K]``), or ``None``."""
        if probs is not None and probs.shape != (len(self.candidates),):
            raise ValueError(f"{self.name} at {self.spec.site}: size probs of shape {tuple(probs.shape)}, "
                             f"expected ({len(self.candidates)},) over candidates {self.candidates}")
        self.size_probs = probs
        if probs is not None:
            self.active_size = self.size

    def fix_size(self, k: int) -> None:
        """Search mode: use the leading slice of size ``k`` with no mixture (and no Φ gradient)."""
        if k not in self.candidates and k != self.size:
            raise ValueError(f"size {k} is not among the candidates {self.candidates} of {self.name} at {self.spec.site}")
        self.size_probs = None
        self.active_size = k

    def channel_weights(self) -> torch.Tensor | None:
        """Per-channel weights ``w_j = sum of probs of sizes > j`` (None when no mixture is set)."""
        if self.size_probs is None:
            return None
        return self.size_probs.to(self._channel_mask.dtype) @ self._channel_mask

    def sliced(self, k: int | None = None) -> Op:
        """A fixed-mode copy at size ``k`` holding the leading slice of this op's weights."""
        k = self.active_size if k is None else k
        ref = next(self.parameters())
        new = type(self)(self.spec, k, **self._init_kwargs()).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            self._copy_slice(new, k)
        return new

    def _init_kwargs(self) -> dict:
        return {}

    def _copy_slice(self, new: Op, k: int | None) -> None:
        for (_, src), (_, dst) in zip(self.named_parameters(), new.named_parameters()):
            dst.copy_(src)

    # ---- compute ---------------------------------------------------------------------------------
    def delta(self, x: torch.Tensor, host: nn.Module) -> torch.Tensor:
        """The op's contribution: from the host's input (parallel) or running output (serial)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"site={self.spec.site}, size={self.size}"


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU (``gelu_new``), as the BIPEFT/S3Delta adapters use."""
    return torch.nn.functional.gelu(x, approximate="tanh")
